"""The zoo's registry and its training: long-pretrained backbones, paid for once and shipped in ``zoo/``.

Every entry is a line of :data:`ZOO`: a protocol's training images, a pretext, a dose and a seed.
The dose is counted in epochs of BEiT pretraining on that protocol's training images and priced in
training FLOPs; another pretext at the same dose gets as many optimiser steps as that many FLOPs buy
it (:func:`plan`), so pretexts are compared at equal compute. Every entry trains with a
warmup-stable-decay schedule (:class:`mood.core.engine.WarmupStableDecay`): the doses of one family
(protocol, pretext, masking, seed) share their stable part, and each shorter dose is a cooldown branch
off the longest run's checkpoint, which gives the same weights as training that dose alone
(``zoo verify --retrain`` checks it).

    python -m mood zoo list                 # what is shipped, with dose, FLOPs, time, img/s, device, commit
    python -m mood zoo train --commit       # the missing entries in the registry's order, each committed
    python -m mood zoo verify               # every file against its card
    python -m mood zoo verify --retrain near-beit-e4-s0
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from mood.core import zoo as store
from mood.core.cache import Cache, fingerprint
from mood.core.engine import decay_steps, fit, steps_per_epoch
from mood.core.images import sample_tensors
from mood.core.machine import code_commit, device_name, git_output, utc_now
from mood.core.models import Backbone, timm_create_args
from mood.core.pretext import Rng, build_pretext, make_task
from mood.core.tokenizer import PatchTokenizer
from mood.core.typecheck import override
from mood.experiments.config import PretrainConfig
from mood.experiments.resolve import resolve

COOLDOWN = 0.2  # the decayed fraction of every entry's schedule (Hägele et al. 2024: 20% suffices)
NEAR_DOSES = (4, 16, 64)  # log-spaced; 4 is the book's dose before the zoo, 64 = 16x it
SEEDS = (0, 1, 2)
SHORT = {"beit": "beit", "classification": "cls", "mae": "mae", "simmim": "simmim"}


@dataclass(frozen=True)
class ZooSpec:
    """One registered entry.

    Args:
        protocol: whose training images it pretrains on (:func:`mood.core.protocols.make_protocol`).
        pretext: the pretext task (:data:`mood.core.pretext.PRETEXTS`).
        dose: the pretraining dose in epochs of BEiT on those images, at equal FLOPs for other pretexts.
        seed: seeds everything the pretraining draws (init, tokenizer, order, masks).
        mask_kind: None (the pretext's own) or ``"random"``.
    """

    protocol: str
    pretext: str
    dose: int
    seed: int = 0
    mask_kind: str | None = None

    @property
    def name(self) -> str:
        where = {"near-split": "near", "multi-class": "multi"}.get(self.protocol, self.protocol.replace("one-class:", "class"))
        mask = f"-{self.mask_kind}" if self.mask_kind else ""
        return f"{where}-{SHORT.get(self.pretext, self.pretext)}{mask}-e{self.dose}-s{self.seed}"

    @property
    def family(self) -> tuple:
        """Entries that share one warmup-stable-decay run (all but their cooldowns)."""
        return self.protocol, self.pretext, self.mask_kind, self.seed


def _near(pretext: str, seed: int, doses: Iterable[int] = NEAR_DOSES, mask_kind: str | None = None) -> list[ZooSpec]:
    return [ZooSpec("near-split", pretext, d, seed, mask_kind) for d in doses]


# The registry, in the order `zoo train` trains it: what the book needs first, one seed of everything,
# then the other seeds, then the masking ablation. The one-class dose is 4x the book's before the zoo (10).
ZOO: tuple[ZooSpec, ...] = (
    *_near("beit", 0), *_near("classification", 0),
    ZooSpec("multi-class", "beit", 64, 0),
    *(ZooSpec(f"one-class:{k}", "beit", 40, 0) for k in range(10)),
    *_near("beit", 1), *_near("classification", 1), *_near("beit", 2), *_near("classification", 2),
    *(ZooSpec("near-split", "beit", 64, s, "random") for s in SEEDS),
)
ZOO_NAMES: dict[str, ZooSpec] = {s.name: s for s in ZOO}


def get_spec(name: str) -> ZooSpec:
    """The registered entry ``name``; a one-line ``ValueError`` naming the registry otherwise."""
    if name not in ZOO_NAMES:
        raise ValueError(f"{name!r} is not a registered zoo entry; registered: {', '.join(ZOO_NAMES)}")
    return ZOO_NAMES[name]


@dataclass(frozen=True)
class Plan:
    """How an entry trains: the resolved run (model, data, format), its pretraining configuration and dose.

    Attributes:
        steps: optimiser steps; ``flops_per_step``: training FLOPs of one (forward and backward, counted
            by ``torch.utils.flop_counter`` as ``benchmarks/train_speed.py`` counts them).
        branch_at: the step its cooldown leaves the family's longest run (None: it is that run).
    """

    spec: ZooSpec
    profile: str
    run: Any
    cfg: PretrainConfig
    steps: int
    flops_per_step: float
    branch_at: int | None

    @property
    def data(self):
        return self.run.protocol.train

    @property
    def images(self) -> int:
        return self.steps * self.cfg.batch_size


def _task(model, cfg: PretrainConfig) -> torch.nn.Module:
    """A pretext task for counting FLOPs (BEiT's codebook need not be fitted for that)."""
    torch.manual_seed(0)
    backbone = Backbone(copy.deepcopy(model))
    tok = None
    if cfg.pretext == "beit":
        tok = PatchTokenizer(backbone.patch_size, backbone.cfg.in_chans, cfg.vocab_size)
        tok.fitted.fill_(True)
    return build_pretext(cfg.pretext, backbone, tokenizer=tok, mask_ratio=cfg.mask_ratio, mask_kind=cfg.mask_kind)


def step_flops(model, cfg: PretrainConfig, n: int = 8) -> float:
    """Training FLOPs of one step of ``cfg`` (batch ``cfg.batch_size``), counted on ``n`` images."""
    task = _task(model, cfg).train()
    x = torch.randn(n, model.in_chans, model.img_size, model.img_size)
    y = torch.zeros(n, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        loss, _ = task.loss(x, y, Rng.seeded(0))
        loss.backward()
    return float(counter.get_total_flops()) / n * cfg.batch_size


def _family_max(spec: ZooSpec) -> ZooSpec:
    return max((s for s in ZOO if s.family == spec.family), key=lambda s: s.dose, default=spec)


def plan(spec: ZooSpec, profile: str = "cpu") -> Plan:
    """The resolved training of ``spec`` at ``profile`` (``smoke``: the same recipe on the profile's few images)."""
    run = resolve(profile, spec.protocol)
    base = run.profile.pretrain
    cfg = override(base, pretext=spec.pretext, mask_kind=spec.mask_kind, epochs=spec.dose, seed=spec.seed,
                   schedule="wsd", cooldown=COOLDOWN)
    spe = steps_per_epoch(len(run.protocol.train), cfg)
    fps = step_flops(run.profile.model, cfg)
    beit = fps if spec.pretext == "beit" else step_flops(run.profile.model, replace(cfg, pretext="beit", mask_kind=None))
    steps = round(spec.dose * spe * beit / fps)  # equal FLOPs: the BEiT dose's FLOPs over this pretext's step
    cfg = override(cfg, steps=steps, epochs=-(-steps // spe))
    top = _family_max(spec)
    branch = None
    if top.dose > spec.dose:
        branch = steps - decay_steps(cfg, steps)
    return Plan(spec, profile, run, cfg, steps, fps, branch)


def _workdir(p: Plan, cache: Cache) -> Path:
    top = plan(_family_max(p.spec), p.profile) if p.branch_at is not None else p
    return cache.dir("zoo", {"stage": "zoo", "model": p.run.profile.model.to_dict(), "trunk": top.cfg.to_dict(),
                             "data": fingerprint(p.data), "format": asdict(p.run.profile.format)})


def _new_task(p: Plan, x: torch.Tensor, state_dir: Path) -> torch.nn.Module:
    """The pretext task as :func:`mood.experiments.pipeline.pretrain` builds it (same seeding order)."""
    torch.manual_seed(p.cfg.seed)
    backbone = Backbone(copy.deepcopy(p.run.profile.model))
    return make_task(p.cfg, backbone, x, state_dir)


def _step_of(ckpt: Path) -> int:
    if not ckpt.exists():
        return 0
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    return int(state.get("step", 0))


def _states(task: torch.nn.Module) -> tuple[dict, dict]:
    """The backbone's tensors under timm's names without the classifier, and the pretext's own (its
    heads in fp16; BEiT's codebook as ``tokenizer.codebook``, in fp32: a token is its nearest code)."""
    net = task.backbone.net
    head = {f"head.{k}" for k in ("weight", "bias")}
    backbone = {k: v for k, v in net.state_dict().items() if k not in head}
    pretext = {k: v if k.startswith("tokenizer.") else v.to(store.STORAGE_DTYPE) for k, v in task.state_dict().items()
               if not k.startswith("backbone.") and not k.endswith(".fitted") and not k.startswith("masks.")}
    return backbone, pretext


def _card(p: Plan, history: list[dict], seconds_here: float) -> dict:
    repo = Path(__file__).resolve().parents[2]
    commit, dirty = code_commit(repo)
    seconds = float(sum(h["seconds"] for h in history))
    images = p.images
    cmd = f"python -m mood zoo train {p.spec.name}" + (f" --profile {p.profile}" if p.profile != "cpu" else "")
    m = p.run.profile.model
    return {
        "summary": (f"{m.name} pretrained with {p.spec.pretext}"
                    f"{' (' + p.spec.mask_kind + ' masking)' if p.spec.mask_kind else ''} on {p.spec.protocol}'s "
                    f"training images, dose {p.spec.dose} BEiT-epochs, seed {p.spec.seed}"),
        "registry": asdict(p.spec), "profile": p.profile,
        "model": asdict(m), "timm": timm_create_args(m),
        "data": {**fingerprint(p.data), "format": asdict(p.run.profile.format)},
        "pretrain": p.cfg.to_dict(),
        "dose": {"beit_epochs": p.spec.dose, "steps": p.steps, "images": images, "epochs": images / len(p.data),
                 "flops_per_step": p.flops_per_step, "flops": p.flops_per_step * p.steps,
                 "note": "training FLOPs of the network's forward and backward passes (torch.utils.flop_counter); the "
                         "tokenizer's k-means fit, once per family, is not counted"},
        "schedule": {"kind": "wsd", "warmup_steps": int(p.cfg.warmup_epochs * steps_per_epoch(len(p.data), p.cfg)),
                     "cooldown_steps": decay_steps(p.cfg, p.steps), "branched_at_step": p.branch_at,
                     "trunk": _family_max(p.spec).name if p.branch_at is not None else None},
        "command": cmd, "commit": commit, "code_dirty": dirty, "device": device_name(), "torch": torch.__version__,
        "date": utc_now(), "seconds": round(seconds, 1), "seconds_this_branch": round(seconds_here, 1),
        "img_per_s": round(images / seconds, 1) if seconds else None,
        "history": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.items()} for h in history],
    }


def _commit(name: str, root: Path) -> str | None:
    """Commits ``zoo/<name>`` alone in the repository holding ``root`` (retrying a busy index)."""
    top = git_output("rev-parse", "--show-toplevel", cwd=root)
    if top is None:
        return None
    rel = str((root / name).resolve().relative_to(Path(top)))
    for _ in range(20):
        if git_output("add", "--", rel, cwd=Path(top)) is not None and \
                git_output("commit", "-q", "-m", f"zoo: {name}", "--", rel, cwd=Path(top)) is not None:
            return git_output("rev-parse", "--short", "HEAD", cwd=Path(top))
        time.sleep(3)
    return None


def train_entry(p: Plan, root: Path | None = None, cache: Cache | None = None, commit: bool = False) -> Path:
    """Trains one entry (resuming whatever its family's runs have saved) and writes it to the zoo."""
    cache = cache or Cache()
    root = store.zoo_root(root)
    work = _workdir(p, cache)
    x, y = sample_tensors(p.data, p.run.profile.format, p.cfg.max_images, p.cfg.seed)
    run_dir = work / ("trunk" if p.branch_at is None else p.spec.name)
    t0 = time.perf_counter()
    if p.branch_at is not None and not (run_dir / "last.pt").exists():
        top = plan(_family_max(p.spec), p.profile)
        trunk = work / "trunk"
        if _step_of(trunk / "last.pt") <= p.branch_at:  # the longest run up to this dose's cooldown
            fit(_new_task(top, x, work), x, y, top.cfg, trunk, desc=f"zoo[{top.spec.name}]", stop_at_step=p.branch_at)
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(trunk / "last.pt", run_dir / "last.pt")
        # else the longest run is past the branch point: this dose trains alone (the same weights)
    task = _new_task(p, x, work)
    history = fit(task, x, y, p.cfg, run_dir, desc=f"zoo[{p.spec.name}]")
    backbone, pretext = _states(task)
    out = store.write_entry(p.spec.name, backbone, pretext, _card(p, history, time.perf_counter() - t0), root)
    if commit:
        print(f"zoo: {p.spec.name} committed as {_commit(p.spec.name, root)}")
    return out


def missing(names: Iterable[str] | None = None, root: Path | None = None, force: bool = False) -> list[ZooSpec]:
    """The registered entries to train, in the registry's order: ``names`` (all when None) not yet shipped."""
    specs = [get_spec(n) for n in names] if names else list(ZOO)
    have = set(store.shipped(root))
    order = {s.name: i for i, s in enumerate(ZOO)}
    return sorted((s for s in specs if force or s.name not in have), key=lambda s: order[s.name])


def train(names: Iterable[str] | None = None, profile: str = "cpu", root: Path | None = None, cache: Cache | None = None,
          commit: bool = False, force: bool = False) -> list[Path]:
    """Trains the missing entries (or ``names``) in the registry's order; each is written, and with
    ``commit`` committed, as soon as it is done, so an interruption loses at most the one in progress
    (and resumes it from its last checkpoint)."""
    todo = missing(names, root, force)
    plans = [plan(s, profile) for s in todo]  # every name and setting checked before anything trains
    out = []
    for p in plans:
        print(f"zoo: training {p.spec.name} ({p.steps} steps, {p.images:,} images, {p.flops_per_step * p.steps:.3g} FLOPs)")
        out.append(train_entry(p, root, cache, commit))
    return out


def table(root: Path | None = None) -> pd.DataFrame:
    """One row a shipped entry: what it is, its dose, what it cost, where and from what code."""
    rows = []
    for name in store.shipped(root):
        c = store.read_card(name, root)
        r = c["registry"]
        pretext = r["pretext"] + (f" ({r['mask_kind']})" if r["mask_kind"] else "")
        rows.append({"entry": name, "protocol": r["protocol"], "pretext": pretext,
                     "dose (BEiT epochs)": r["dose"], "seed": r["seed"], "steps": c["dose"]["steps"],
                     "images": c["dose"]["images"], "PFLOPs": c["dose"]["flops"] / 1e15, "seconds": c["seconds"],
                     "img/s": c["img_per_s"], "device": c["device"], "commit": c["commit"][:10],
                     "profile": c["profile"], "sha256": c["files"][store.BACKBONE]["sha256"][:12]})
    return pd.DataFrame(rows)


def card_text(name: str, root: Path | None = None) -> str:
    """Entry ``name``'s card as text (history as a table)."""
    c = store.read_card(name, root)
    hist = pd.DataFrame(c.pop("history"))
    return json.dumps(c, indent=1) + "\n\nhistory:\n" + hist.to_string(index=False)


def verify(root: Path | None = None) -> pd.DataFrame:
    """Every shipped entry's files against its card, and its card against its registry line."""
    rows = []
    for name in store.shipped(root):
        c = store.read_card(name, root)
        problems = store.file_problems(name, root)
        spec = ZOO_NAMES.get(name)
        if spec is None or asdict(spec) != c["registry"]:
            problems.append("its card does not match the registry line of that name")
        rows.append({"entry": name, "ok": not problems, "problems": "; ".join(problems)})
    return pd.DataFrame(rows, columns=["entry", "ok", "problems"])


def retrain(name: str, root: Path | None = None) -> dict:
    """Trains entry ``name`` again, alone (no branching, fresh folders), with the profile its card names,
    and compares it with the shipped files: bit for bit, else the largest weight difference and the
    difference in the last epoch's loss."""
    card = store.read_card(name, root)
    p = plan(get_spec(name), card["profile"])
    with tempfile.TemporaryDirectory(prefix="mood-zoo-retrain-") as tmp:
        work = Path(tmp)
        x, y = sample_tensors(p.data, p.run.profile.format, p.cfg.max_images, p.cfg.seed)
        task = _new_task(p, x, work)
        t0 = time.perf_counter()
        history = fit(task, x, y, p.cfg, work / "run", desc=f"retrain[{name}]")
        seconds = time.perf_counter() - t0
    fresh, _ = _states(task)
    stored = store.load_state(name, root=root)
    fresh16 = {k: v.detach().to(store.STORAGE_DTYPE) for k, v in fresh.items()}
    same = set(fresh16) == set(stored) and all(torch.equal(fresh16[k], stored[k]) for k in stored)
    diff = max(float((fresh16[k].float() - stored[k].float()).abs().max()) for k in stored if k in fresh16)
    return {"entry": name, "bit_for_bit": same, "max_abs_weight_diff": diff,
            "loss_shipped": card["history"][-1]["loss"], "loss_retrained": history[-1]["loss"],
            "seconds": round(seconds, 1), "img_per_s": round(p.images / seconds, 1)}
