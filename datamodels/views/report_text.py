"""The report's words (:mod:`datamodels.views.report` writes them): its reading guide, the rule and
caption of each kind of term, the legend of every table's columns and why a column may be
empty, and what each retraining check measured."""

READING_GUIDE = """<h2>How to read this report</h2>
<p>Many models were trained, each on a random subset of the training set. A <b>player</b> is what
a subset keeps or drops: one training image, or a group of images (a class or a cluster of
look-alikes; figures show a group's first image and say how many it has; a run without its
dataset names players by index and class, <i>player 123 (class 4)</i>). A <b>target</b> is a
test image whose <b>margin</b> (correct-class logit minus the best other) every model records.
For each target a sparse model of <i>subset &rarr; margin</i> is fitted, as a sum of Möbius
coefficients <i>m(S)</i> over the sets of players <i>S</i> the subset keeps.</p>
<ul><li><b>Main effect</b> <i>m({{i}})</i>: the margin player <i>i</i> adds when kept. Positive: it
helps the model get the target right; negative: it pushes towards another class.</li>
<li><b>Synergy</b>: a pair's <i>m({{i,j}})</i> has the same sign as the sum of its members' main
effects: together they do more than the sum of their parts.</li>
<li><b>Redundancy</b>: <i>m({{i,j}})</i> has the opposite sign: together they do less than the sum,
each covers for the other (near-duplicates).</li>
<li><b>Triples</b> are judged as a group: synergy only when <i>m(S)</i> has the sign of the members'
main effects and none of its pairs is redundant; redundancy when <i>m(S)</i> plus its pairs' <i>m</i>
has the opposite sign. Three look-alikes of which any one suffices have <i>m</i> = +1 on each member,
&minus;1 on each pair and +1 on the triple: the +1 only undoes the pairs' over-correction, and the group
is redundant, not synergistic.</li></ul>
<p><b>Faithfulness</b>: how well the fitted model predicts margins of models it never saw
(held-out R^2, and Spearman rank correlation, the LDS). Details: {docs}; pruning: {pruning}.</p>"""

KIND_TITLE = {"main": "main effects", "synergy": "synergy", "redundancy": "redundancy"}
KIND_RULE = {
    "main": "",
    "synergy": ("A pair is synergistic when its Möbius coefficient m has the sign of the sum of its members' main "
                "effects: kept together they move the margin further than the sum of their main effects. A triple "
                "is shown here only when m has that sign and none of its pairs is redundant (see the reading "
                "guide). Targets are ranked by their strongest synergy pair."),
    "redundancy": ("A pair is redundant when its Möbius coefficient m has the sign opposite to the sum of its "
                   "members' main effects: one suffices, the other adds little once it is kept. A triple is shown "
                   "here when m plus its pairs' m has that opposite sign (e.g. three look-alikes of which any one "
                   "suffices). Targets are ranked by their strongest redundancy pair."),
}
KIND_TEXT = {
    "main": "Each row: the target, then one training player with its main effect m: the margin it adds "
            "when kept (m > 0 helps the model get the target right).",
    "synergy": "Each row: the target, then the members of one synergistic pair or triple, with its Möbius "
               "coefficient m. " + KIND_RULE["synergy"],
    "redundancy": "Each row: the target, then the members of one redundant pair or triple, with its Möbius "
                  "coefficient m. " + KIND_RULE["redundancy"],
}

# The table of the strongest terms over all targets shows at most this many of one target.
TERMS_PER_TARGET = 2
STRENGTH_TEXT = ("Each row: a target, the members of one pair or triple of its fit, its Möbius coefficient m, and "
                 "|m| in units of the target's residual sd (the sd of what the fit leaves unexplained on held-out "
                 "models, sqrt(1 - R^2) times the margin's sd): the criterion that ranks terms and targets here, so "
                 f"that a term of a noisy target does not outrank a sharper one of a well-fitted target. At most "
                 f"{TERMS_PER_TARGET} terms of one target.")

KIND_BARS = ("Each target: the distribution of its margin over the models, then one bar per term: its Möbius "
             "coefficient m (blue: m > 0), labelled with its members, by player index and class.")
# What a figure of a target's strongest terms of each kind holds (its caption's end).
KIND_SHOWN = {"main": "",
              "synergy": " (pairs whose m has the sign of their main effects, and triples synergistic as a group)",
              "redundancy": " (pairs whose m has the sign opposite to their main effects, and triples redundant as a "
                            "group)"}
KIND_BARS_TEXT = {kind: f"{KIND_BARS} {rule}".strip() for kind, rule in KIND_RULE.items()}

DUPLICATES_TEXT = ("Groups of players that cancel each other's effect: for each pair, the fraction of its members' "
                   "main effect its pair term cancels, pooled over the targets (1: exact duplicates, each teaching "
                   "what both do; 0: effects that add), and the pairs that significantly exceed "
                   "duplicates.min_fraction joined into groups where they share a player (jobs/duplicates.py, "
                   "{path}). Each row: the group's members, its score (the mean fraction of its pairs), the most "
                   "targets one of its pairs matters to, and its size. A curation script can keep one member of "
                   "each group, or send the group to review.")

CLASS_PAIRS_TEXT = ("Each row: {target}the classes of the two members of a pair (class_a, class_b), and how many of "
                    "the fitted pairs of that kind have these classes (pairs).")

# What each column of the page's tables holds: the legend under every table. A key "fraction"
# describes the numeric columns that are kept fractions (0.9, 0.7, ...).
INTERVAL = "the 95% interval of {}"
LEGENDS = {
    "faithfulness": {
        "engine": "the fit's engine (jobs/fit.py fit=<engine>)", "targets": "targets it fitted",
        "R2 q05": "held-out R^2 at the 5% quantile over the targets (1: margins of unseen models predicted exactly; "
                  "0: no better than their mean)",
        **{f"R2 q{q:02d}": f"the same at the {q}% quantile" for q in (25, 75, 95)},
        "R2 median": "the same at the median",
        "Spearman (LDS) median": "median over the targets of the rank correlation between predicted and actual "
                                 "margins of the held-out models (the linear datamodeling score)"},
    "worst": {
        "target": "the target (its class in brackets)",
        "r2": "held-out R^2 of its fit", "spearman": "held-out Spearman rank correlation (LDS)",
        "noise_ceiling": "the R^2 that the margin's true mean per mask reaches against single training seeds: the "
                         "most any surrogate can explain",
        "r2_fraction_of_ceiling": "r2 as a fraction of noise_ceiling"},
    "terms": {
        "target": "the target (its class in brackets)",
        "players": "the members of the pair or triple: player index (class, examples in the group)",
        "kind": "synergy or redundancy by the rule of the reading guide (pairs: m against the members' main "
                "effects; triples judged as groups; mixed: a triple that is neither)",
        "m": "the Möbius coefficient m(S): the margin the set adds when all its members are kept, beyond its "
             "subsets' terms",
        "|m| / residual sd": "|m| in units of the target's residual sd, the criterion that ranks the rows"},
    "classes": {
        "target_class": "the target's class", "class_a": "the class of one member of the pair",
        "class_b": "the class of the other member", "pairs": "fitted pairs of this kind with these classes"},
    "duplicates": {
        "rank": "the group's rank, best first", "players": "the group's members: player index (class)",
        "score": "the mean fraction of its members' main effect that its pairs cancel (1: exact duplicates)",
        "targets": "the most targets one of its pairs matters to", "size": "players in the group"},
    "pair checks": {
        "group": "which pairs: the fit's pairs (by stratum of rank where stratified) or the random controls",
        "pairs": "pairs checked", "confirmed": "pairs measured significant with the predicted sign (controls: "
                                               "significant at all, a false alarm)",
        "rate": "confirmed / pairs", "lo": INTERVAL.format("rate (Wilson's)"), "hi": INTERVAL.format("rate"),
        "right_sign": "pairs measured with the sign the fit predicts",
        "real_at_least": "a lower bound on the share of real pairs: 2 x (share with the right sign) - 1",
        "real_lo": INTERVAL.format("real_at_least"), "real_hi": INTERVAL.format("real_at_least"),
        "slope": "least-squares slope of measured on predicted over every check (1: the fit's sizes are right)",
        "slope_lo": INTERVAL.format("slope"), "slope_hi": INTERVAL.format("slope"),
        "exact_agreement": "share of checks within two standard errors of the exhaustive sweep's exact value"},
    "pair rows": {
        "target": "the target the pair was checked on", "i": "one member of the pair", "j": "the other member",
        "kind": "the fit's label of the pair (synergy or redundancy)",
        "predicted": "the fit's expected double difference at the run's alpha",
        "measured": "the measured double difference f(S+i+j) - f(S+i) - f(S+j) + f(S)",
        "lo": INTERVAL.format("measured"), "hi": INTERVAL.format("measured"),
        "exact": "the exact double difference of the exhaustive sweep",
        "confirmed": "significant after Benjamini-Hochberg, with the predicted sign"},
    "removals": {
        "method": "who chose the removed set", "k": "players removed", "targets": "targets measured",
        "drop": "the target's margin with the set minus without, mean over targets",
        "lo": INTERVAL.format("drop"), "hi": INTERVAL.format("drop"),
        "flip_rate": "how often removing the set turns a right prediction wrong",
        "predicted": "the drop the fit predicts, mean over targets",
        "spearman_predicted_measured": "rank correlation of predicted and measured drops over every set of the check"},
    "removal pairs": {
        "k": "players removed", "method": "who chose the removed set", "against": "the method it is compared with",
        "targets": "targets measured by both", "difference": "the method's drop minus against's, mean over targets",
        "lo": INTERVAL.format("difference"), "hi": INTERVAL.format("difference"),
        "p": "two-sided p-value of the paired t-test"},
    "pruning": {"method": "the pruning method (docs/pruning.md)",
                "fraction": "the fraction of the training players kept: holdout accuracy, mean [95% interval] over "
                            "seeds"},
    "pruning paired": {"method": "the pruning method",
                       "fraction": "the fraction kept: the method's holdout accuracy minus the best baseline's at "
                                   "that fraction, paired by seed, mean [95% interval] vs that baseline; 'best "
                                   "baseline': the method is that baseline"},
    "keep-sets": {"method": "the pruning method", "fraction": "the fraction asked for: players kept (first draw)"},
}
# Why a column holds no value: the legend says so where a column is partly empty, and an empty column is left out.
MISSING = {
    "noise_ceiling": "the noise ceiling needs repeated masks, sweep.repeats>=2 (each mask trained with two or more "
                     "seeds); this run has sweep.repeats={repeats}",
    "r2_fraction_of_ceiling": "it needs the noise ceiling, so sweep.repeats>=2",
    "right_sign": "a control pair has no predicted sign", "real_at_least": "a control pair has no predicted sign",
    "real_lo": "a control pair has no predicted sign", "real_hi": "a control pair has no predicted sign",
    "slope": "fewer than 3 measured checks", "slope_lo": "fewer than 3 measured checks",
    "slope_hi": "fewer than 3 measured checks",
    "measured": "a cell of the 2x2 had fewer than 2 models", "lo": "no interval: too few measurements",
    "hi": "no interval: too few measurements", "p": "no test: too few targets",
    "exact": "the sweep is not exhaustive", "fraction": "that method was not evaluated at that fraction",
}


ABLATION_TEXT = {
    "pairs": ("Each checked pair of the fit (and as many random control pairs on the same targets, grey) was "
              "trained as a 2x2 factorial on random backgrounds at the run's alpha: both, only i, only j, neither, "
              "one seed per background. Measured: the double difference f(S+i+j) - f(S+i) - f(S+j) + f(S) on the "
              "pair's target, mean and 95% interval over the backgrounds; predicted: the fit's expected interaction "
              "at alpha. Confirmed: significant (Benjamini-Hochberg at ablate.fdr over the checked pairs) with the "
              "predicted sign. A control confirmed is a false alarm."),
    "heldout": ("Every pair of the fit measured without training, on the fit's own held-out models: the double "
                "difference of the four cells' mean margins (both kept, only i, only j, neither), with its standard "
                "error. A first filter: few held-out models fall in each cell."),
    "removal": ("For chosen targets, sets of k players that each method says lower the target's margin most "
                "(interactions: the adaptive greedy on the fitted polynomial, which can take a redundant pair as a "
                "block; linear: the top k by weight; random: k players of the target's class), trained with and "
                "without the set, paired. Drop: the target's margin with the set minus without, mean over targets "
                "and 95% interval; flip rate: how often removing the set makes a right prediction wrong."),
}
