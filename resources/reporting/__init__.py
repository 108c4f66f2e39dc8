"""Validation reports for every task: metrics at a calibrated threshold, plots, the HTML page."""
