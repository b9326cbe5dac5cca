"""The ``mfn`` model family: multiplicative filter networks with Fourier or
Gabor filters (:mod:`.net`, the ``filter`` option), trained as a Once-for-All
supernet with LSQ (the shared code is in :mod:`core.inr`). The fit is
imported only when called, so decoding never imports it."""


def fit(image, opts, progress=None):
    from ..inr.fit import fit_inr
    from ..inr.layout import KIND_FOURIER, KIND_GABOR

    return fit_inr(image, opts, progress, KIND_GABOR if opts.resolved_filter() == "gabor" else KIND_FOURIER)
