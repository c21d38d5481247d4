"""beamside's Grafana dashboards, one module each, built from shared helpers.

``queries`` (selectors, thresholds, targets), ``panels`` (panel constructors)
and ``board`` (variables, layout, envelope) hold what dashboards share; each
other module builds one dashboard.  ``scripts/build_dashboards.py`` writes them:
a new panel goes in its dashboard's module, a new dashboard is a module here
and one line in that script's ``BUILDERS``.
"""
