"""Revision scripts, oldest first: 0001 baseline, 0002 run lifecycle, 0003 tool errors,
0004 run stages."""
