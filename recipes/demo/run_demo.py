"""`make demo`: placeholder until the demo issue lands; says what is missing."""

import sys

print("make demo: the built-in demo (generator, SSSL vs. inherit on the CPU) is not built yet.")
print("Missing: sssl_brain.demo_data and the demo recipe (issue 5).")
sys.exit(0)
