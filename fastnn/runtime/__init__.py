"""The Numba runtime under the compiled kernels: kernel cache, cold start and
its compile helper, the compile notice, Ctrl-C handling, thread choice and
ahead-of-time compiling."""
