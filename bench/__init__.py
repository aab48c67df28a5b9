"""Benchmarks. Each runs its contenders against the same throwaway servers in one run."""
