"""The device side of mfg-vision and its contract with the platform.

Imports nothing from Dagster or the other packages of this repository, so that an edge device can
install it alone.
"""
