"""The jobs behind `ascl data`: a prompt mix built from benchmark files (`prompt_sources`, `prompt_mix`,
`prompt_output`) and a cold-start SFT set distilled from a teacher's rollouts (`cold_start`,
`cold_start_run`). They read benchmarks, run rollouts and judges, so they sit above `eval/`; the file
formats the trainers read stay in `ascl_jax.data` (docs/design.md §3)."""
