"""What a process runs on and with: devices and the mesh, processes (``jax.distributed``), XLA's
CPU flags and compilation cache, files (atomic writes), the console (progress), and the
accelerators it compiles for.

``devices``: the ``data`` mesh, shardings, multi-process start-up, global batch assembly;
``xla_cpu``: XLA CPU flag presets (imports no JAX: applied before JAX starts);
``compile_cache``: JAX's persistent compilation cache (on by default); ``fileio``: the
one way a file is replaced; ``progress``: progress bars and plain lines on process 0;
``targets``: TPU slices and GPU boxes as compile targets (chip figures, compile-only devices,
``gpu_specs/`` XLA GPU target descriptions); ``compiled``: what a compiled program says per
device (memory, FLOPs, collectives, roofline).

Imports nothing of glf_jax (the bottom layer).
"""
