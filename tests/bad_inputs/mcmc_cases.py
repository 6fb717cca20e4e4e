"""Bad-input cases of arrcoc.bayes.mcmc (owned by the mcmc agent; failing cases are strict xfails)."""
from __future__ import annotations

import torch

from . import (keyword_cases, BAD_BOOL, BAD_CALLABLE, BAD_COUNT, BAD_GENERATOR, BAD_INT, BAD_POSITIVE, BAD_PROB, BAD_REAL, BAD_STR,
               BAD_TENSOR, F64, Case, bad_tensor, resolve)

M = "arrcoc.bayes.mcmc."


def g():
    return torch.Generator().manual_seed(0)


def ld(x):  # (C, d) -> (C,)
    return -0.5 * (x ** 2).sum(-1)


def mc(name):
    return resolve(M + name)


def pos():
    return torch.zeros(2, 3, dtype=F64)


def hmc_state():
    return mc("hmc_init")(pos(), ld)


def metric():
    return mc("identity_metric")(2, 3, False, F64)


kw = keyword_cases(M)


def sample_kw(kernel=None, **over):
    base = dict(kernel=kernel if kernel is not None else mc("RWMH")(step_size=0.5), logdensity_fn=ld, num_chains=2,
                num_warmup=4, num_samples=4, generator=g(), dim=2, progress=False)
    base.update(over)
    return base


def _welford3():
    s = mc("welford_init")(2, 3, False, F64, "cpu")
    for i in range(3):
        s = mc("welford_update")(s, torch.full((2, 3), float(i), dtype=F64))
    return s


def tensors(*names, shape=(2, 3)):
    return lambda: {n: torch.zeros(shape, dtype=F64) for n in names}


CASES = [
    # ------------------------------------------------------------------------------------ the driver
    kw("sample", sample_kw, "num_chains", BAD_COUNT),
    kw("sample", sample_kw, "num_samples", BAD_COUNT, name="num_samples"),
    kw("sample", sample_kw, "generator", BAD_GENERATOR, name="generator"),
    kw("sample", sample_kw, "init", bad_tensor((2, 2)), name="init"),
    kw("sample", sample_kw, "kernel", BAD_CALLABLE, name="kernel"),
    kw("MCMCResult", lambda: {"draws": {"x": torch.zeros(1, 1)}, "info": {}, "unconstrained": torch.zeros(1, 1, 1)},
       "draws", BAD_TENSOR),
    kw("driver.RunSpec", lambda: {"kernel": mc("RWMH")(), "logdensity_fn": ld, "generator": g(), "num_warmup": 1,
                                  "num_samples": 1, "thin": 1, "keep_warmup_info": False}, "num_samples", BAD_COUNT),
    kw("driver.torch_threads", {"num_threads": 1}, "num_threads", BAD_COUNT, finite=False),
    kw("driver.distribution_validation", {"enabled": True}, "enabled", BAD_BOOL, finite=False),
    # ------------------------------------------------------------------------------- kernel configs
    kw("HMC", {}, "step_size", BAD_POSITIVE),
    kw("HMC", {}, "num_steps", BAD_COUNT, name="num_steps"),
    kw("HMC", {}, "max_delta_energy", BAD_POSITIVE, name="max_delta_energy"),
    kw("NUTS", {}, "target_accept", BAD_PROB),
    kw("NUTS", {}, "max_tree_depth", BAD_COUNT, name="max_tree_depth"),
    kw("NUTS", {}, "step_size", BAD_POSITIVE, name="step_size"),
    kw("RWMH", {}, "step_size", BAD_POSITIVE),
    kw("DelayedAcceptance", {"surrogates": [ld]}, "target_accept", BAD_PROB),
    kw("MetropolisBlock", {"names": "x"}, "target_accept", BAD_PROB),
    kw("ParallelTempering", {}, "num_temps", BAD_COUNT),
    kw("ParallelTempering", {}, "min_beta", BAD_PROB, name="min_beta"),
    kw("Conditional", {"names": "x", "fn": lambda *a: None}, "fn", BAD_CALLABLE),
    kw("ConjugateConditional", {"names": "x", "fn": lambda *a: None}, "names", BAD_CALLABLE),
    kw("Gibbs", lambda: {"model": mc("Model")(lambda p: -(p["x"] ** 2).sum(-1), {"x": (1, None)}), "blocks": []}, "blocks",
       BAD_CALLABLE),
    kw("Model", {"logdensity_fn": lambda p: p, "spec": {"x": (1, None)}}, "spec", BAD_TENSOR),
    kw("as_model", {"model_or_fn": ld, "dim": 2}, "dim", BAD_COUNT),
    kw("PyroModel", {"model": lambda: None}, "max_plate_nesting", BAD_COUNT),
    kw("AdaptationConfig", {}, "gamma", BAD_POSITIVE),
    kw("AdaptationConfig", {}, "init_buffer", BAD_COUNT, name="init_buffer"),
    kw("AdaptationConfig", {}, "curvature_every", BAD_COUNT, name="curvature_every"),
    kw("AdaptationConfig", {}, "init_metric", BAD_STR, name="init_metric"),
    kw("initial_metric.hessian_inverse_mass", {"logdensity_fn": ld, "dense": False}, "position", bad_tensor((2, 3))),
    kw("initial_metric.finite_difference_hessian", {"logdensity_fn": ld}, "position", bad_tensor((2, 3))),
    kw("CompileConfig", {}, "vectorize_min_numel", BAD_COUNT),
    kw("CompileConfig", {}, "cpp_wrapper", BAD_BOOL),
    kw("checks.DiagnosticsConfig", {}, "max_rhat", BAD_POSITIVE),
    kw("checks.MCMCWarning", {"kind": "rhat", "message": "m"}, "kind", BAD_STR),
    kw("checks.RunDiagnostics", {"num_chains": 2, "num_draws": 4}, "num_chains", BAD_COUNT),
    kw("initialization.UniformInit", {}, "low", BAD_REAL),
    kw("initialization.OptimizeInit", {}, "num_candidates", BAD_COUNT),
    kw("initialization.as_init_strategy", {"init": "uniform"}, "init", BAD_STR, pos=("init",)),
    # -------------------------------------------------------------------------- kernels and states
    kw("hmc_init", {"logdensity_fn": ld}, "position", bad_tensor((2, 3))),
    kw("rwmh_init", {"logdensity_fn": ld}, "position", bad_tensor((2, 3))),
    kw("hmc_step", lambda: {"state": hmc_state(), "generator": g(), "logdensity_fn": ld, "step_size": torch.full((2,), 0.1, dtype=F64),
                            "metric": metric(), "num_steps": 2}, "step_size", bad_tensor((2,))),
    kw("hmc_step", lambda: {"state": hmc_state(), "generator": g(), "logdensity_fn": ld, "step_size": torch.full((2,), 0.1, dtype=F64),
                            "metric": metric(), "num_steps": 2}, "generator", BAD_GENERATOR, name="generator"),
    kw("nuts_step", lambda: {"state": hmc_state(), "generator": g(), "logdensity_fn": ld, "step_size": torch.full((2,), 0.1, dtype=F64),
                             "metric": metric()}, "max_tree_depth", BAD_COUNT),
    kw("rwmh_step", lambda: {"state": mc("rwmh_init")(pos(), ld), "generator": g(), "logdensity_fn": ld,
                             "step_size": torch.full((2,), 0.1, dtype=F64), "metric": metric()}, "generator", BAD_GENERATOR),
    kw("delayed_acceptance_step", lambda: {"state": mc("DAState")(pos(), torch.zeros(2, 1, dtype=F64)), "generator": g(),
                                           "levels": [ld], "step_size": torch.full((2,), 0.1, dtype=F64), "metric": metric()},
       "generator", BAD_GENERATOR),
    kw("find_reasonable_step_size", lambda: {"state": hmc_state(), "generator": g(), "logdensity_fn": ld,
                                             "step_size": torch.full((2,), 0.1, dtype=F64), "metric": metric()}, "max_iter", BAD_COUNT),
    kw("hamiltonian", lambda: {"logdensity": torch.zeros(2, dtype=F64), "momentum": pos(), "metric": metric()}, "momentum",
       bad_tensor((2, 3))),
    kw("leapfrog", lambda: {"logdensity_fn": ld, "metric": metric(), "state": mc("IntegratorState")(pos(), pos(), torch.zeros(2, dtype=F64), pos()),
                            "step_size": torch.full((2,), 0.1, dtype=F64)}, "step_size", bad_tensor((2,))),
    kw("mclachlan", lambda: {"logdensity_fn": ld, "metric": metric(), "state": mc("IntegratorState")(pos(), pos(), torch.zeros(2, dtype=F64), pos()),
                             "step_size": torch.full((2,), 0.1, dtype=F64)}, "step_size", bad_tensor((2,))),
    kw("leapfrog_raw", lambda: {"logdensity_fn": ld, "metric": metric(), "q": pos(), "p": pos(), "logp": torch.zeros(2, dtype=F64),
                                "grad": pos(), "eps": torch.full((2,), 0.1, dtype=F64)}, "eps", bad_tensor((2,))),
    kw("integrators.leapfrog_step", lambda: {"value_and_grad_fn": lambda q: (ld(q), -q), "metric": metric(), "q": pos(), "p": pos(),
                                             "grad": pos(), "eps": torch.full((2,), 0.1, dtype=F64)}, "eps", bad_tensor((2,))),
    kw("identity_metric", {"num_chains": 2, "dim": 3}, "dim", BAD_COUNT),
    kw("make_metric", {}, "inverse_mass", bad_tensor((2, 3))),
    kw("kinetic_energy", lambda: {"metric": metric(), "p": pos()}, "p", bad_tensor((2, 3))),
    kw("velocity", lambda: {"metric": metric(), "p": pos()}, "p", bad_tensor((2, 3))),
    kw("sample_momentum", lambda: {"metric": metric(), "generator": g(), "like": pos()}, "generator", BAD_GENERATOR),
    kw("metrics.momentum_from_normal", lambda: {"metric": metric(), "z": pos()}, "metric", BAD_TENSOR),
    kw("proposal_noise", lambda: {"metric": metric(), "generator": g(), "like": pos()}, "generator", BAD_GENERATOR),
    kw("geometric_betas", {"num_temps": 4, "min_beta": 0.1}, "min_beta", BAD_PROB),
    kw("geometric_betas", {"num_temps": 4, "min_beta": 0.1}, "num_temps", BAD_COUNT, name="num_temps"),
    kw("safe_logdensity", {"logdensity_fn": ld}, "x", bad_tensor((2, 3))),
    kw("value_and_grad", {"logdensity_fn": ld}, "x", bad_tensor((2, 3))),
    kw("sample_distribution", lambda: {"dist": torch.distributions.Normal(0.0, 1.0), "generator": g(), "sample_shape": (2,)},
       "generator", BAD_GENERATOR),
    kw("base.uniform_like", lambda: {"shape": (2, 3), "generator": g(), "dtype": F64, "device": "cpu"}, "generator", BAD_GENERATOR),
    kw("base.check_generator", {}, "generator", BAD_GENERATOR, finite=False),
    # ------------------------------------------------------------------------------------- adaptation
    kw("WindowAdaptation", lambda: {"num_warmup": 10, "cfg": mc("AdaptationConfig")(), "target_accept": 0.8, "dense": False},
       "num_warmup", BAD_COUNT),
    kw("window_schedule", lambda: {"num_warmup": 10, "cfg": mc("AdaptationConfig")()}, "num_warmup", BAD_COUNT),
    kw("dual_averaging_init", {}, "step_size", bad_tensor((2,))),
    kw("dual_averaging_update", lambda: {"s": mc("dual_averaging_init")(torch.full((2,), 0.1, dtype=F64)), "accept": torch.ones(2, dtype=F64),
                                         "target": 0.8, "cfg": mc("AdaptationConfig")()}, "target", BAD_PROB),
    kw("dual_averaging_final", {}, "s", BAD_TENSOR),
    kw("welford_init", {"num_chains": 2, "dim": 3, "dense": False, "dtype": F64, "device": "cpu"}, "dim", BAD_COUNT),
    kw("welford_update", lambda: {"s": mc("welford_init")(2, 3, False, F64, "cpu")}, "x", bad_tensor((2, 3))),
    kw("welford_covariance", lambda: {"s": _welford3()}, "regularize", BAD_POSITIVE),
    # ---------------------------------------------------------------------------------- compiled
    kw("CompiledLogDensity", {}, "fn", BAD_CALLABLE),
    kw("compile_logdensity", {}, "fn", BAD_CALLABLE),
    kw("compiled.compile_graph", {"args": (torch.zeros(2),)}, "fn", BAD_CALLABLE),
    kw("compiled.CompiledGraph", {"vectorized": False, "largest_numel": 1}, "fn", BAD_CALLABLE),
    kw("compiled.largest_numel", {}, "gm", BAD_TENSOR),
    kw("compiled.functional_value_and_grad", {}, "fn", BAD_CALLABLE),
    kw("compiled.autograd_value_and_grad", {"forward": ld}, "x", bad_tensor((2, 3))),
    kw("compiled.failure_reason", {}, "err", BAD_TENSOR, finite=False),
    # -------------------------------------------------------------------------- NUTS tree internals
    kw("nuts_async.nuts_async_init", lambda: {"state": hmc_state()}, "max_tree_depth", BAD_COUNT),
    kw("nuts_async.nuts_async_step", lambda: {"state": mc("nuts_async.nuts_async_init")(hmc_state()), "generator": g(),
                                              "logdensity_fn": ld, "step_size": torch.full((2,), 0.1, dtype=F64), "metric": metric()},
       "generator", BAD_GENERATOR),
    kw("nuts_async.tree_step", lambda: {"state": mc("nuts_async.nuts_async_init")(hmc_state())}, "normal", bad_tensor((2, 3))),
    kw("nuts_async.tree_run", lambda: {"state": mc("nuts_async.nuts_async_init")(hmc_state())}, "normal", bad_tensor((2, 3))),
    kw("trajectory.energy_error", lambda: {"energy": torch.zeros(2, dtype=F64), "initial_energy": torch.zeros(2, dtype=F64)},
       "max_delta_energy", BAD_POSITIVE),
    kw("trajectory.leaf_energy", lambda: {"logdensity": torch.zeros(2, dtype=F64), "momentum": pos(), "velocity": pos(),
                                          "metric": metric()}, "momentum", bad_tensor((2, 3))),
    kw("trajectory.pack_proposal", lambda: {**tensors("position", "grad")(), "energy": torch.zeros(2, dtype=F64)}, "logdensity",
       bad_tensor((2,))),
    kw("trajectory.unpack_proposal", lambda: {"proposal": torch.zeros(2, 8, dtype=F64)}, "dim", BAD_COUNT),
    kw("trajectory.sample_leaf", tensors("subtree_log_weight", "subtree_proposal", "delta", "ok", "log_uniform"), "leaf",
       bad_tensor((2, 3))),
    kw("trajectory.merge_subtree", tensors("log_weight", "proposal", "subtree_log_weight", "subtree_proposal", "valid"),
       "log_uniform", bad_tensor((2, 3))),
    kw("trajectory.no_uturn", tensors("velocity_a", "velocity_b"), "momentum_sum", bad_tensor((2, 3))),
    kw("trajectory.checkpoint_record", tensors("momentum", "velocity", "momentum_sum", "previous_momentum"),
       "previous_velocity", bad_tensor((2, 3))),
    kw("trajectory.subtree_no_uturn", tensors("start", "momentum_sum"), "velocity", bad_tensor((2, 3))),
    kw("trajectory.halves_no_uturn", tensors("start", "right_start", "momentum_sum"), "velocity", bad_tensor((2, 3))),
    kw("trajectory.merge_no_uturn", tensors("far_velocity", "near_velocity", "near_momentum", "velocity", "first_momentum",
                                            "first_velocity", "momentum_sum"), "subtree_ok", bad_tensor((2, 3))),
    # ------------------------------------------------------------------------------ checks and plots
    kw("checks.diagnose", lambda: {"draws": {"x": torch.zeros(2, 8, dtype=F64)}, "unconstrained": torch.zeros(2, 8, 1, dtype=F64),
                                   "info": {}, "max_depth_hits": None, "warmup_logdensity": None,
                                   "cfg": mc("checks.DiagnosticsConfig")()}, "unconstrained", bad_tensor((2, 8, 1))),
    kw("checks.stuck_chains", lambda: {"cfg": mc("checks.DiagnosticsConfig")()}, "warmup_logdensity", bad_tensor((2, 8))),
    kw("checks.scalar_parameters", {}, "draws", BAD_TENSOR.map(lambda t: {"x": t})),
    kw("plots.scalar_draws", {}, "draws", BAD_TENSOR),
    *[kw(f"plots.{f}", {}, "draws", BAD_TENSOR.map(lambda t: {"x": t}), examples=3) for f in ("plot_trace", "plot_rank", "plot_autocorr")],
]

EXEMPT = {
    **{M + n: "NamedTuple state / info container built by the kernels (no user input)"
       for n in ("DualAveragingState", "WelfordState", "DAInfo", "DAState", "GibbsInfo", "GibbsParams", "GibbsState",
                 "HMCInfo", "HMCParams", "HMCState", "IntegratorState", "Metric", "MHInfo", "MHParams", "MHState", "NUTSInfo",
                 "TemperingInfo", "TemperingState", "nuts_async.NUTSTreeState", "nuts_async.NUTSAsyncInfo")},
    M + "INTEGRATORS": "constant (dict of integrator functions)",
    M + "initialization.INIT_STRATEGIES": "constant (dict of init strategies)",
    M + "base.Kernel": "typing.Protocol (documents the kernel interface; not instantiated)",
    M + "base.Adaptation": "typing.Protocol (documents the adaptation interface; not instantiated)",
    M + "base.LogDensityFn": "typing.Protocol / type alias of a log density (not called)",
    M + "checks.MCMCDiagnosticWarning": "warning category (a Warning subclass)",
    **{M + "graph_cache." + n: "plumbing of CompiledLogDensity's on-disk step-graph cache: called by run_step / "
       "compile_graph with the keys, graphs and arguments they built, never with user input"
       for n in ("graph_cache_dir", "logdensity_fingerprint", "step_graph_key", "load_graph", "save_graph",
                 "drop_graph", "restore_meta", "package_path", "package_numel", "package_lock", "save_package",
                 "drop_package")},
}


# Known findings in the owner's area (case id -> what happens); strict xfails: remove an entry once fixed.
XFAIL = {
    'arrcoc.bayes.mcmc.Gibbs:blocks':
        "bayes.mcmc.Gibbs: bad blocks -> raised TypeError that does not name 'blocks': object of type 'NoneType' has no len()",
    'arrcoc.bayes.mcmc.MCMCResult:draws':
        'bayes.mcmc.MCMCResult: bad draws -> returns NaN/inf or raises an error that does not name it',
    'arrcoc.bayes.mcmc.MetropolisBlock:target_accept':
        'bayes.mcmc.MetropolisBlock: bad target_accept -> .target_accept = nan',
    'arrcoc.bayes.mcmc.ParallelTempering:num_temps':
        "bayes.mcmc.ParallelTempering: bad num_temps -> raised TypeError that does not name 'num_temps': logspace() received an invalid combination of arguments - got (float, ",
    'arrcoc.bayes.mcmc.PyroModel:max_plate_nesting':
        'bayes.mcmc.PyroModel: bad max_plate_nesting -> raised StopIteration (not a clear TypeError/ValueError):',
    'arrcoc.bayes.mcmc.WindowAdaptation:num_warmup':
        "bayes.mcmc.WindowAdaptation: bad num_warmup -> raised TypeError that does not name 'num_warmup': can't multiply sequence by non-int of type 'float'",
    'arrcoc.bayes.mcmc.checks.RunDiagnostics:num_chains':
        'bayes.mcmc.checks.RunDiagnostics: bad num_chains -> .max_rhat = nan',
    'arrcoc.bayes.mcmc.checks.diagnose:unconstrained':
        "bayes.mcmc.checks.diagnose: bad unconstrained -> raised AttributeError (not a clear TypeError/ValueError): 'NoneType' object has no attribute 'shape'",
    'arrcoc.bayes.mcmc.checks.scalar_parameters:draws':
        'bayes.mcmc.checks.scalar_parameters: bad draws -> returns NaN/inf or raises an error that does not name it',
    'arrcoc.bayes.mcmc.checks.stuck_chains:warmup_logdensity':
        "bayes.mcmc.checks.stuck_chains: bad warmup_logdensity -> raised AttributeError (not a clear TypeError/ValueError): 'NoneType' object has no attribute 'shape'",
    'arrcoc.bayes.mcmc.compiled.autograd_value_and_grad:x':
        'bayes.mcmc.compiled.autograd_value_and_grad: bad x -> [0] has NaN/inf entries: [nan, -0.375',
    'arrcoc.bayes.mcmc.compiled.compile_graph:fn':
        "bayes.mcmc.compiled.compile_graph: bad fn -> raised TypeError that does not name 'fn': 'NoneType' object is not callable",
    'arrcoc.bayes.mcmc.compiled.largest_numel:gm':
        'bayes.mcmc.compiled.largest_numel: bad gm -> returns NaN/inf or raises an error that does not name it',
    'arrcoc.bayes.mcmc.driver.RunSpec:num_samples':
        'bayes.mcmc.driver.RunSpec: bad num_samples -> returns NaN/inf or raises an error that does not name it',
    'arrcoc.bayes.mcmc.dual_averaging_final:s':
        'bayes.mcmc.dual_averaging_final: bad s -> returns NaN/inf or raises an error that does not name it',
    'arrcoc.bayes.mcmc.dual_averaging_init:step_size':
        'bayes.mcmc.dual_averaging_init: bad step_size -> [0] has NaN/inf entries: [nan, -0.6931471805599453]',
    'arrcoc.bayes.mcmc.dual_averaging_update:target':
        'bayes.mcmc.dual_averaging_update: bad target -> [0] has NaN/inf entries: [nan, nan]',
    'arrcoc.bayes.mcmc.find_reasonable_step_size:max_iter':
        "bayes.mcmc.find_reasonable_step_size: bad max_iter -> raised TypeError that does not name 'max_iter': 'float' object cannot be interpreted as an integer",
    'arrcoc.bayes.mcmc.geometric_betas:num_temps:num_temps':
        "bayes.mcmc.geometric_betas: bad num_temps -> raised TypeError that does not name 'num_temps': logspace() received an invalid combination of arguments - got (float, fl",
    'arrcoc.bayes.mcmc.hamiltonian:momentum':
        'bayes.mcmc.hamiltonian: bad momentum -> has NaN/inf entries: [inf, 0.375]',
    'arrcoc.bayes.mcmc.hmc_init:position':
        'bayes.mcmc.hmc_init: bad position -> [0] has NaN/inf entries: [nan, 0.5, 0.5, 0.5, 0.5, 0.5',
    'arrcoc.bayes.mcmc.hmc_step:step_size':
        'bayes.mcmc.hmc_step: bad step_size -> [1][5] has NaN/inf entries: [nan, 0.5]',
    'arrcoc.bayes.mcmc.identity_metric:dim':
        'bayes.mcmc.identity_metric: bad dim -> raised TypeError that does not name \'dim\': ones(): argument \'size\' failed to unpack the object at pos 2 with error "type must b',
    'arrcoc.bayes.mcmc.integrators.leapfrog_step:eps':
        'bayes.mcmc.integrators.leapfrog_step: bad eps -> raised RuntimeError (not a clear TypeError/ValueError): The size of tensor a ',
    'arrcoc.bayes.mcmc.kinetic_energy:p':
        'bayes.mcmc.kinetic_energy: bad p -> has NaN/inf entries: [nan, 0.375]',
    'arrcoc.bayes.mcmc.leapfrog:step_size':
        'bayes.mcmc.leapfrog: bad step_size -> [0] has NaN/inf entries: [nan, nan, nan, 0.0, 0.0, 0.0]',
    'arrcoc.bayes.mcmc.leapfrog_raw:eps':
        'bayes.mcmc.leapfrog_raw: bad eps -> raised RuntimeError (not a clear TypeError/ValueError): The size of tensor a (3) must matc',
    'arrcoc.bayes.mcmc.make_metric:inverse_mass':
        "bayes.mcmc.make_metric: bad inverse_mass -> raised ValueError that does not name 'inverse_",
    'arrcoc.bayes.mcmc.mclachlan:step_size':
        'bayes.mcmc.mclachlan: bad step_size -> [0] has NaN/inf entries: [nan, nan, nan, 0.0, 0.0, 0.0]',
    'arrcoc.bayes.mcmc.metrics.momentum_from_normal:metric':
        'bayes.mcmc.metrics.momentum_from_normal: bad metric -> returns NaN/inf or raises an error that does not name it',
    'arrcoc.bayes.mcmc.nuts_async.nuts_async_init:max_tree_depth':
        "bayes.mcmc.nuts_async.nuts_async_init: bad max_tree_depth -> raised TypeError that does not name 'max_tree_depth': zeros(): argument 'size' failed to unpack the objec",
    'arrcoc.bayes.mcmc.nuts_async.tree_run:normal':
        "bayes.mcmc.nuts_async.tree_run: bad normal -> raised TypeError that does not name 'norma",
    'arrcoc.bayes.mcmc.nuts_async.tree_step:normal':
        "bayes.mcmc.nuts_async.tree_step: bad normal -> raised TypeError that does not name 'normal",
    'arrcoc.bayes.mcmc.nuts_step:max_tree_depth':
        "bayes.mcmc.nuts_step: bad max_tree_depth -> raised TypeError that does not name 'max_tree_depth': 'float' object cannot be interpreted as an integer",
    'arrcoc.bayes.mcmc.plots.plot_trace:draws':
        'bayes.mcmc.plots.plot_trace: bad draws -> returns NaN/inf or raises an error that does not name it',
    'arrcoc.bayes.mcmc.plots.scalar_draws:draws':
        'bayes.mcmc.plots.scalar_draws: bad draws -> returns NaN/inf or raises an error that does not name it',
    'arrcoc.bayes.mcmc.rwmh_init:position':
        'bayes.mcmc.rwmh_init: bad position -> [0] has NaN/inf entries: [nan, 0.5, 0.5, 0.5, 0.5, 0.',
    'arrcoc.bayes.mcmc.safe_logdensity:x':
        'bayes.mcmc.safe_logdensity: bad x -> has NaN/inf entries: [-inf, -0.375]',
    'arrcoc.bayes.mcmc.trajectory.checkpoint_record:previous_velocity':
        'bayes.mcmc.trajectory.checkpoint_record: bad previous_velocity -> has NaN/inf entries: [0.',
    'arrcoc.bayes.mcmc.trajectory.energy_error:max_delta_energy':
        'bayes.mcmc.trajectory.energy_error: bad max_delta_energy -> returns NaN/inf or raises an error that does not name it',
    'arrcoc.bayes.mcmc.trajectory.halves_no_uturn:velocity':
        'bayes.mcmc.trajectory.halves_no_uturn: bad velocity -> raised IndexError (not a clear Type',
    'arrcoc.bayes.mcmc.trajectory.leaf_energy:momentum':
        'bayes.mcmc.trajectory.leaf_energy: bad momentum -> has NaN/inf entries: [inf, 0.0]',
    'arrcoc.bayes.mcmc.trajectory.merge_subtree:log_uniform':
        'bayes.mcmc.trajectory.merge_subtree: bad log_uniform -> raised NotImplementedError (not a ',
    'arrcoc.bayes.mcmc.trajectory.pack_proposal:logdensity':
        'bayes.mcmc.trajectory.pack_proposal: bad logdensity -> has NaN/inf entries: [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]',
    'arrcoc.bayes.mcmc.trajectory.sample_leaf:leaf':
        'bayes.mcmc.trajectory.sample_leaf: bad leaf -> raised NotImplementedError (not a clear Typ',
    'arrcoc.bayes.mcmc.trajectory.subtree_no_uturn:velocity':
        'bayes.mcmc.trajectory.subtree_no_uturn: bad velocity -> raised IndexError (not a clear Typ',
    'arrcoc.bayes.mcmc.trajectory.unpack_proposal:dim':
        "bayes.mcmc.trajectory.unpack_proposal: bad dim -> raised TypeError that does not name 'dim': slice indices must be integers or None or have an __index__ method",
    'arrcoc.bayes.mcmc.value_and_grad:x':
        'bayes.mcmc.value_and_grad: bad x -> [0] has NaN/inf entries: [-inf, -0.375]',
    'arrcoc.bayes.mcmc.velocity:p':
        'bayes.mcmc.velocity: bad p -> has NaN/inf entries: [nan, 0.5, 0.5, 0.5, 0.5, 0.5]',
    'arrcoc.bayes.mcmc.welford_covariance:regularize':
        'bayes.mcmc.welford_covariance: bad regularize -> has NaN/inf entries: [nan, nan, nan, nan, nan, nan]',
    'arrcoc.bayes.mcmc.welford_init:dim':
        'bayes.mcmc.welford_init: bad dim -> raised TypeError that does not name \'dim\': zeros(): argument \'size\' failed to unpack the object at pos 2 with error "type must be ',
    'arrcoc.bayes.mcmc.welford_update:x':
        'bayes.mcmc.welford_update: bad x -> [0] has NaN/inf entries: [nan, 0.5, 0.5, 0.5, 0.5, 0.5]',
    'arrcoc.bayes.mcmc.window_schedule:num_warmup':
        "bayes.mcmc.window_schedule: bad num_warmup -> raised TypeError that does not name 'num_warmup': can't multiply sequence by non-int of type 'float'",
}
