"""Code shared by the coordinate-MLP families (``siren``, ``mfn``): the
supernet layout (:mod:`.layout`), its serialisation (:mod:`.bitstream`), the
Once-for-All fit with LSQ (:mod:`.fit`) and decoding (:mod:`.decode`)."""
