"""Settings of the process around the library, made once before JAX starts:
glibc's malloc (`hostmem`), JAX's persistent compilation cache
(`compile_cache`), the devices made of the CPU (`cpu_devices`, by the
count of usable cores in `cores`) and deterministic kernels on a GPU
(`gpu_determinism`). The CLI applies them; library users opt
in. JAX's own settings that would change what charlstm computes
(`jax_settings`) the CLI sets back to JAX's defaults, and the library holds
there only while it computes. One module is not a setting: `memory`, the free memory a new run's
size is checked against."""
