"""Fitted spectra as shapiq's ``InteractionValues`` (Muschalik et al., "shapiq", NeurIPS 2024),
so that shapiq's plots (network, upset, force, ...) and index conversions work on this tool's
results, whichever engine fitted them. Needs the optional ``spex`` extra (shapiq).

The Möbius index is exported as is: ``values[interaction_lookup[S]] = m(S)``, the empty set
holding the baseline ``m(()) = f(no player kept)``.
"""

from __future__ import annotations

import numpy as np


def _shapiq():
    try:
        import shapiq
    except ImportError as err:
        raise ImportError("exporting to shapiq needs the optional `spex` extra: pip install -e '.[spex]'") from err
    return shapiq


def to_interaction_values(mobius: dict, n: int):
    """A Möbius spectrum (``estimator.mobius_``, or a target's rows of ``interactions.parquet``
    gathered as ``{members: mobius}``) over ``n`` players as ``shapiq.InteractionValues``."""
    shapiq = _shapiq()
    terms = {(): float(mobius.get((), 0.0))}
    terms.update({tuple(sorted(int(i) for i in S)): float(v) for S, v in mobius.items() if len(S)})
    outside = [S for S in terms if S and not 0 <= max(S) < n]
    if outside:
        raise ValueError(f"to_interaction_values: term {outside[0]} names a player outside 0..{n - 1}")
    lookup = {S: i for i, S in enumerate(terms)}
    return shapiq.InteractionValues(np.array(list(terms.values())), index="Moebius", n_players=n, min_order=0,
                                    max_order=max(len(S) for S in terms), interaction_lookup=lookup,
                                    baseline_value=terms[()], estimated=True)


def from_interaction_values(values) -> dict:
    """Back from shapiq: ``{members: m(S)}`` of an ``InteractionValues`` in the Möbius index."""
    if values.index != "Moebius":
        raise ValueError(f"from_interaction_values reads the Möbius index; got {values.index!r} "
                         f"(convert with shapiq's MoebiusConverter the other way round)")
    return {tuple(int(i) for i in S): float(values.values[i]) for S, i in values.interaction_lookup.items()}
