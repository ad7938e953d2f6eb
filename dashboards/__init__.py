"""keytrail dashboards: index templates, saved objects and the HTML audit report."""
