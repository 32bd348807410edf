"""Metric-aware inference (Lukasik et al., arXiv 2403.04182): output the Bayes-optimal answer for
the metric that will be used.

* :mod:`~workbench.metric_aware.metrics`: the one metric registry, one card per metric (kind, data,
  direction, Bayes-optimal rule, range, citation, pairwise form);
* :mod:`~workbench.metric_aware.decision`: Bayes-optimal decision rules over a predictive distribution;
* :mod:`~workbench.metric_aware.pairwise`: vectorised utility matrices of the text metrics (their pairwise forms);
* :mod:`~workbench.metric_aware.mbr`: minimum-Bayes-risk selection for text metrics;
* :mod:`~workbench.metric_aware.bootstrap`: bootstrap intervals and paired bootstrap tests;
* :mod:`~workbench.metric_aware.baselines`: constant priors, TF-IDF + ridge, MiniLM + ridge;
* :mod:`~workbench.metric_aware.calibration`: NLL, ECE and a temperature fitted on dev;
* :mod:`~workbench.metric_aware.experiments`: one task through every inference strategy, sweeps;
* :mod:`~workbench.metric_aware.plots`: the plots of notebooks 01-03 (each takes an Axes and returns it).
"""
