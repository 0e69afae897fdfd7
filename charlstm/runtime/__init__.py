"""Settings of the process around the library, made once before JAX starts:
glibc's malloc (`hostmem`) and JAX's persistent compilation cache
(`compile_cache`). The CLI applies both; library users opt in."""
