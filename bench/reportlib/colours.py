"""One fixed colour per model, the same in every chart and table of a report
and of a comparison. A colour stands for a model and for nothing else:
chart parts that are not models (user against kernel time, the SLO line,
the legend of a split bar) are drawn in black or as a fill pattern."""

# The usual c10k models and the references keep their colour in every run,
# so two reports read alike. Anything else (variants, new models) takes the
# next unused colour of EXTRA in the order the run lists its models.
KNOWN = {
    "threaded": "#d62728",
    "prefork": "#8c564b",
    "epoll": "#1f77b4",
    "libevent": "#17becf",
    "libuv": "#2ca02c",
    "uring": "#9467bd",
    "coro": "#ff7f0e",
    "nginx": "#7a7a00",
    "ceiling": "#7f7f7f",
}
EXTRA = ["#e377c2", "#ff9896", "#aec7e8", "#98df8a", "#c5b0d5", "#c49c94", "#ffbb78",
         "#f7b6d2", "#9edae5", "#dbdb8d", "#393b79", "#637939", "#843c39", "#7b4173",
         "#3182bd", "#e6550d"]
# Not a model: axes, whiskers, the SLO line, keys of split bars.
INK = "#000000"


def palette(models):
    """{model: '#rrggbb'} for every name in models (an ordered list)."""
    out = {m: KNOWN[m] for m in models if m in KNOWN}
    free = [c for c in EXTRA if c not in out.values()]
    for m in models:
        if m not in out:
            # more than 25 models: colours repeat (the tables still name each model)
            out[m] = free.pop(0) if free else EXTRA[len(out) % len(EXTRA)]
    return out
