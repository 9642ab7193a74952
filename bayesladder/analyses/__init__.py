"""The paper's analyses as library functions: checkpoint variance, compute vs error (ladder subsets)."""
