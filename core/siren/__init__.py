"""The ``siren`` model family: a sine-activated coordinate MLP (:mod:`.net`)
trained as a Once-for-All supernet with LSQ (the shared code is in
:mod:`core.inr`). The fit is imported only when called, so decoding never
imports it."""


def fit(image, opts, progress=None):
    from ..inr.fit import fit_inr
    from ..inr.layout import KIND_SIREN

    return fit_inr(image, opts, progress, KIND_SIREN)
