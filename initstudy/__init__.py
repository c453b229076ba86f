"""initstudy: train CNNs under many weight initializers and test the differences.

From a notebook, without training anything:

    results = initstudy.analyze_frame(df, threshold=0.9, claims=[...])
    results.arms, results.pairwise, results.omnibus      # pandas tables
    initstudy.render_report(results, "report/", pdf=True)

Both import the analysis on first call, so `import initstudy` stays light.
"""

from importlib import metadata as _metadata

from .plugins import whole_model  # noqa: F401 (marks a whole-model initializer plugin; imports no torch)

try:
    __version__ = _metadata.version("initstudy")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "unknown"


def analyze_frame(df, threshold: float = 0.9, alpha: float = 0.05, claims: list[dict] | None = None,
                  budget_epochs: int | None = None, factors: list[str] | None = None, order: list[str] | None = None,
                  reference: str | None = None, target_effect: float = 0.8, design: str = "auto",
                  labels: dict | None = None, name: str = "frame"):
    """Analyse a tidy data frame of training logs, one row per run and epoch (columns initializer, seed, epoch,
    val_acc; optional run, val_loss, train_loss, diverged, factor columns), as `initstudy import` checks it.

    The arguments are the settings-file keys (`claims`: a list of dicts as in a study file's `claims:`).
    Returns a frozen `initstudy.pipeline.Analysis`: `.to_dict()` is results.json, `.to_frame(kind)` (or
    `.arms`, `.pairwise`, `.omnibus`, `.claims`) pandas tables. Bad input raises a ValueError subclass.
    """
    from .pipeline import analyze_dataframe

    raw = {"threshold": threshold, "alpha": alpha, "claims": claims, "budget_epochs": budget_epochs,
           "factors": factors, "order": order, "reference": reference, "target_effect": target_effect,
           "design": design, "labels": labels}
    return analyze_dataframe(df, {k: v for k, v in raw.items() if v is not None}, name)


def render_report(results, out_dir, pdf: bool = False) -> dict:
    """Write report.html, results.json and tidy.csv (and report.pdf with `pdf`) of `analyze_frame`'s results
    into `out_dir`; returns {"html": path, ...}."""
    from .report import write_logs_report

    return write_logs_report(results, out_dir, pdf=pdf)[0]
