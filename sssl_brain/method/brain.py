"""SSSLBrain: the noise-robust segment classifier (stage 1 of SSSL) as SpeechBrain hooks.

Per training epoch after ``warmup_epochs`` (docs/method.md, "One SSSL epoch, in call order"):

1. ``on_stage_start`` computes the cross-entropy of every training segment
   (eval mode, no grad; under DDP each rank a shard, gathered) and
   :func:`sssl_brain.method.partition.partition_segments` splits them (Eq. 3):
   X = {w_i > tau} are labeled, U the rest; rank 0 fits, every rank gets its partition.
2. ``fit_batch`` replaces the labels of U by sharpened predictions of the eval-mode
   serving model (Eq. 4-5),
   mixes inputs and targets (Eq. 6-7), adds the R-Drop symmetric KL of two
   dropout passes of U (Eq. 8) and minimises L_MIX + lambda * L_KL (Eq. 9),
   keeping everything SpeechBrain's ``fit_batch`` does (gradient
   accumulation, ``no_sync``, ``training_ctx``, the grad scaler, ``optimizers_step``).

With ``co_divide`` a second network (the peer, :mod:`~sssl_brain.method.co_divide`) trains beside the
model: each network on the partition of the other's losses, U's guess the mean of both.

With ``ema_decay`` a :class:`~sssl_brain.method.teacher.MeanTeacher` (the EMA of the
weights and batch-norm buffers, updated after every optimiser step) is the serving model:
the partition pass, U's guesses, validation, selection, predictions and export use it.

``method`` selects ``sssl``, ``proposed_star`` (lambda = 0) or ``inherit``
(plain cross-entropy on inherited labels, no partition). The settings are
checked in :mod:`~sssl_brain.method.checks`, the diagnostics written by
:mod:`~sssl_brain.method.reporter`, the checkpoints kept and selected by
:mod:`~sssl_brain.method.selection`.
"""

import numpy as np
import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.distributed import ddp_broadcast, if_main_process
from speechbrain.utils.optimizers import rm_vector_weight_decay

from sssl_brain.dataio.dataset import segment_labels
from sssl_brain.dataio.device_segments import DeviceSegments, fit_loaders
from sssl_brain.method import selection
from sssl_brain.method.checks import check_sssl_hparams, partition_fallback_options
from sssl_brain.method.co_divide import PeerStreams, crossed, make_peer
from sssl_brain.method.forward import SSSLForward
from sssl_brain.method.partition import partition_segments
from sssl_brain.method.reporter import SSSLReporter
from sssl_brain.method.sssl import (
    class_prior_penalty,
    co_guess,
    divided_mix_loss,
    mix_pairs,
    mixup_weights,
    refine_labels,
    replace_unlabeled_targets,
    sharpen,
    soft_cross_entropy,
    sssl_loss,
    symmetric_kl,
    unlabeled_rampup,
)
from sssl_brain.method.teacher import PEER_TEACHER_RECOVERABLE, TEACHER_RECOVERABLE, MeanTeacher
from sssl_brain.utils.distributed import gather_in_order, shard_positions
from sssl_brain.utils.errors import SSSLError
from sssl_brain.utils.training import set_epoch_lr, synchronized_clock

#: Added to the model's epoch seed to seed the peer's random streams (``co_divide``).
PEER_SEED_OFFSET = 10**9


class SSSLBrain(sb.Brain):
    """SpeechBrain Brain for SSSL stage 1 (see the module docstring).

    ``hparams`` holds every key of :data:`sssl_brain.method.checks.BRAIN_HPARAMS` (no code defaults: a
    missing key is a ConfigError naming it) and may hold the objects of
    :data:`~sssl_brain.method.checks.OPTIONAL_BRAIN_HPARAMS`. ``warmup_snapshot``: what
    :func:`sssl_brain.method.warmup.share_warmup` returned (None: no snapshot). The model module is
    ``modules["model"]`` with ``trunk``/``head`` methods.
    """

    def __init__(self, *args, warmup_snapshot=None, **kwargs):
        super().__init__(*args, **kwargs)
        hparams = {**vars(self.hparams), "modules": self.modules}
        check_sssl_hparams(hparams, {"device": self.device, "distributed_launch": self.distributed_launch})
        self.modules["model"] = SSSLForward(self.modules["model"]).to(self.device)
        self.student = self.modules["model"].model  # the trained VGG16 (DDP wraps the SSSLForward around it)
        #: the second network of ``co_divide`` (SSSL methods only), trained beside the student
        self.peer = self.peer_streams = self.peer_optimizer = None
        if self.hparams.co_divide and self.method != "inherit":
            self.peer = make_peer(self.student, int(self.hparams.seed) + 1).to(self.device)
            self.modules["peer"] = SSSLForward(self.peer).to(self.device)
            self.peer_streams = PeerStreams(self.device)
            if self.checkpointer is not None:
                self.checkpointer.add_recoverable("peer", self.peer)
        #: the EMA of the student (``ema_decay``), kept out of ``modules`` so the optimiser never sees it;
        #: with ``co_divide`` the peer has its own (``peer_teacher``), which serves for the peer
        self.teacher = self.peer_teacher = None
        if self.hparams.ema_decay is not None:
            self.teacher = MeanTeacher(self.student, float(self.hparams.ema_decay)).to(self.device)
            if self.peer is not None:
                self.peer_teacher = MeanTeacher(self.peer, float(self.hparams.ema_decay)).to(self.device)
            if self.checkpointer is not None:
                self.checkpointer.add_recoverable(TEACHER_RECOVERABLE, self.teacher)
                if self.peer_teacher is not None:
                    self.checkpointer.add_recoverable(PEER_TEACHER_RECOVERABLE, self.peer_teacher)
        self.state = getattr(self.hparams, "partition_state", None) or selection.PartitionState()
        if self.checkpointer is not None and "partition_state" not in self.checkpointer.recoverables:
            self.checkpointer.add_recoverable("partition_state", self.state)
        self.warmup_snapshot = warmup_snapshot
        self.clean_mask = self.clean_prob = self.epoch_probs = self.peer_partition = None
        self.train_dataset = self.class_prior = None
        self.reporter = self._reporter()
        self.mix_generator = torch.Generator()
        #: wall seconds of the training steps (partition pass, validation and checkpoints excluded), the
        #: training segments they saw and the epochs this process ran; for throughput (timing.json)
        self.timing = {"train_step_seconds": 0.0, "train_segments_seen": 0, "epochs_run": 0}

    def _reporter(self, labels=None, truth=None):
        hp = self.hparams
        return SSSLReporter(self.method, hp.n_classes, hp.collapse_margin, getattr(hp, "output_folder", None),
                            hp.plot_partition, getattr(hp, "train_logger", None), labels, truth)

    @property
    def method(self):
        return self.hparams.method

    @property
    def serving_model(self):
        """The model that serves (partition pass, guesses, validation, predictions): the teacher, else the
        student."""
        return self.teacher.module if self.teacher is not None else self.student

    @property
    def serving_peer(self):
        """The peer that serves (``co_divide``: its partition pass and its half of the co-guess): its
        teacher, else the peer itself; None without ``co_divide``."""
        return self.peer_teacher.module if self.peer_teacher is not None else self.peer

    def init_optimizers(self):
        """SpeechBrain's optimiser over the model; with ``co_divide`` a second one of the same class over
        the peer, so each network is clipped and stepped on its own (``optimizers_step``)."""
        if self.peer is None or self.opt_class is None:
            return super().init_optimizers()

        def params(module):  # as SpeechBrain's own init_optimizers, per network
            return rm_vector_weight_decay(module) if self.remove_vector_weight_decay else module.parameters()

        self.optimizer = self.opt_class(params(self.modules["model"]))
        self.peer_optimizer = self.opt_class(params(self.modules["peer"]))
        self.optimizers_dict = {"opt_class": self.optimizer, "peer": self.peer_optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)
            self.checkpointer.add_recoverable("peer_optimizer", self.peer_optimizer)

    def uses_partition(self, epoch):
        """True when this epoch trains with SSSL (after the warm-up, not the baseline)."""
        return self.method != "inherit" and epoch > int(self.hparams.warmup_epochs)

    # ------------------------------------------------------------ training set
    def use_training_set(self, train_set):
        """Keeps the training set for the partition pass: its labels, the class prior, the reporter."""
        self.train_dataset = train_set
        self.train_labels, truth = segment_labels(train_set)
        self.reporter = self._reporter(self.train_labels, truth)
        self.class_prior = torch.as_tensor(self.reporter.label_share, dtype=torch.float32, device=self.device)

    def fit(self, epoch_counter, train_set, valid_set=None, **kwargs):
        """Same as ``Brain.fit``; keeps the training dataset for the partition pass.

        ``train_set`` / ``valid_set`` are segment datasets
        (:func:`sssl_brain.dataio.dataset.segment_dataset`) or, with ``device_features``,
        :class:`~sssl_brain.dataio.device_segments.DeviceSegments` (batches cut on the device; the
        same batches and order).
        """
        self.use_training_set(train_set)
        train_set, valid_set, sampler = fit_loaders(train_set, valid_set, kwargs)
        if sampler is not None:
            self.train_sampler = sampler  # Brain.fit sets its epoch, as make_dataloader's
        self._no_valid = valid_set is None
        return super().fit(epoch_counter, train_set, valid_set, **kwargs)

    # ------------------------------------------------------------ forward/loss
    def compute_forward(self, batch, stage):
        """Logits of a batch of segments: the student in training, the serving model otherwise."""
        model = self.modules.model if stage == sb.Stage.TRAIN or self.teacher is None else self.teacher
        return model(batch.feats.data.to(self.device))

    def guess_probs(self, u_x):
        """U's guess of this step (Eq. 4, before sharpening): the eval-mode serving model, no grad;
        with ``co_divide``, the mean of the serving model's and the peer's (co-guess).

        The same computation for ``sssl`` and ``proposed_star`` (R-Drop on or off), so the
        ablation changes only lambda.
        """
        models = [self.serving_model] + ([self.serving_peer] if self.peer is not None else [])
        probs = []
        for model in models:
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    probs.append(torch.softmax(model(u_x).float(), dim=-1))
            finally:
                model.train(was_training)
        return probs[0] if len(probs) == 1 else co_guess(*probs)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Updates the teacher (and the peer's) after each optimiser step (``ema_decay``)."""
        if should_step and self.teacher is not None:
            self.teacher.update_parameters(self.student)
            if self.peer_teacher is not None:
                self.peer_teacher.update_parameters(self.peer)

    def compute_objectives(self, predictions, batch, stage):
        """Cross-entropy against the inherited labels (warm-up, baseline, validation)."""
        labels = batch.label.data[:, 0].to(self.device)
        self.reporter.count_batch(predictions, labels, batch, stage)
        return F.cross_entropy(predictions.float(), labels)

    def sssl_objective(self, batch, net=None, partition=None, generator=None):
        """Loss of Eq. 9 (plus the optional class-prior term) for one batch, with its parts.

        Targets: X keeps its inherited one-hot label, or with ``refine_labels`` the sharpened
        DivideMix refinement ``w y + (1 - w) p`` (p from the epoch-start partition pass); U gets
        the sharpened guess of ``pseudo_labels`` (``step``: this step's prediction, the paper;
        ``co_guess``: its mean with the epoch-start prediction; ``epoch``: the epoch-start
        prediction alone; each from the serving model in eval mode, :meth:`guess_probs`); with
        ``unlabeled_targets: refined`` the guess is first blended with U's
        inherited label by the clean posterior (:func:`sssl_brain.method.sssl.refine_labels`).

        ``net`` / ``partition`` / ``generator``: the network trained, its ``(clean mask, clean posterior,
        epoch-start probabilities)`` and the mixup generator (default: the model, this epoch's
        partition, ``mix_generator``; ``co_divide`` passes the peer's).

        L_MIX is the paper's one mean over the mixed batch (``unlabeled_loss: joint``), the mean over
        X's mixed rows alone (``none``: U enters them as a mixing partner and R-Drop's L_KL, its own
        rows carry no loss), or DivideMix's ``L_X + lambda_u * L_U``
        (:func:`sssl_brain.method.sssl.divided_mix_loss`, lambda_u = ``unlabeled_weight`` ramped over
        ``unlabeled_rampup_epochs``).

        Returns ``(loss, parts)``, parts: ``l_mix``, ``l_kl``, ``l_prior``, ``l_u`` (L_U before its
        weight; 0 with ``joint`` and ``none``) and ``n_u`` (|U| in the batch).
        """
        hp = self.hparams
        net = self.modules.model if net is None else net
        clean_mask, clean_prob, all_epoch_probs = partition or (self.clean_mask, self.clean_prob,
                                                                self.epoch_probs)
        temperature = float(hp.sharpen_temperature)
        feats = batch.feats.data.to(self.device)
        labels = batch.label.data[:, 0].to(self.device)
        index = batch.index.data[:, 0].to(self.device)
        if clean_mask is None:  # warmup_mixup: every segment labeled (X = all, U empty)
            noisy = torch.zeros_like(labels, dtype=torch.bool)
        else:
            noisy = ~clean_mask[index]
        n_u = int(noisy.sum())
        targets = F.one_hot(labels, int(hp.n_classes)).float()
        epoch_probs = all_epoch_probs[index] if all_epoch_probs is not None else None
        if hp.refine_labels and epoch_probs is not None:
            refined = sharpen(refine_labels(targets, epoch_probs, clean_prob[index]), temperature)
            targets = torch.where(noisy.unsqueeze(-1), targets, refined)
        generator = self.mix_generator if generator is None else generator
        delta, perm = mixup_weights(feats.shape[0], float(hp.mixup_alpha), generator, feats.device)
        mixed_x = mix_pairs(feats, delta, perm)  # Eq. 6; the targets are mixed below, once U has its guesses
        lam = float(hp.rdrop_lambda) if self.method == "sssl" else 0.0
        source = hp.pseudo_labels if epoch_probs is not None else "step"
        l_kl = None
        u_x = feats[noisy]
        if n_u:
            guess = {"step": lambda: self.guess_probs(u_x), "epoch": lambda: epoch_probs[noisy],
                     "co_guess": lambda: co_guess(self.guess_probs(u_x), epoch_probs[noisy])}[source]()
        if n_u and lam > 0:
            out = net(mixed_x, u_x=u_x)
            logits = out["logits"]
            l_kl = symmetric_kl(out["u_logits_a"].float(), out["u_logits_b"].float())  # Eq. 8
            if hp.rdrop_reduction == "batch":
                l_kl = l_kl * (n_u / feats.shape[0])  # a U sample weighs as much as any sample
        else:
            logits = net(mixed_x)
        if n_u:
            if hp.unlabeled_targets == "refined":
                guess = refine_labels(targets[noisy], guess, clean_prob[index][noisy])
            targets = replace_unlabeled_targets(targets, noisy, sharpen(guess, temperature))  # Eq. 4-5
        if l_kl is None:
            l_kl = logits.new_zeros(())
        mixed_targets = mix_pairs(targets, delta, perm)  # Eq. 7
        l_u = logits.new_zeros(())
        if hp.unlabeled_loss == "joint":  # the paper's L_MIX: one mean over the mixed batch
            l_mix = soft_cross_entropy(logits.float(), mixed_targets)
        elif hp.unlabeled_loss == "none":  # X only: U's rows carry no loss (U mixes into X's rows)
            l_mix = soft_cross_entropy(logits.float()[~noisy], mixed_targets[~noisy])
        else:  # DivideMix's L_X + lambda_u * L_U
            weight = float(hp.unlabeled_weight) * unlabeled_rampup(
                hp.epoch_counter.current, int(hp.warmup_epochs), int(hp.unlabeled_rampup_epochs))
            l_mix, l_u = divided_mix_loss(logits.float(), mixed_targets, noisy, weight, hp.unlabeled_loss)
        prior_weight = float(hp.prior_weight)
        l_prior = logits.new_zeros(())
        if prior_weight > 0:
            l_prior = class_prior_penalty(logits.float(), self.class_prior)
        loss = sssl_loss(l_mix, l_kl, lam, l_prior, prior_weight)  # Eq. 9
        return loss, {"l_mix": float(l_mix.detach()), "l_kl": float(l_kl.detach()),
                      "l_prior": float(l_prior.detach()), "l_u": float(l_u.detach()), "n_u": n_u}

    def fit_batch(self, batch):
        """One SSSL step; before/without the partition, SpeechBrain's own ``fit_batch`` (with
        ``warmup_mixup``: :meth:`sssl_objective` with every segment labeled, U empty). With
        ``co_divide`` the peer's loss is added (its own parameters: the sum trains each network
        on its own loss)."""
        plain = self.clean_mask is None and not self.hparams.warmup_mixup
        if plain and self.peer is None:
            return super().fit_batch(batch)
        should_step = (self.step % self.grad_accumulation_factor) == 0
        self.on_fit_batch_start(batch, should_step)
        with self.no_sync(not should_step):
            with self.training_ctx:
                if plain:  # co_divide's warm-up: both networks on the inherited labels
                    loss = self.compute_objectives(self.compute_forward(batch, sb.Stage.TRAIN), batch,
                                                   sb.Stage.TRAIN)
                    labels = batch.label.data[:, 0].to(self.device)
                    loss = loss + self.peer_streams.run(lambda: F.cross_entropy(
                        self.modules.peer(batch.feats.data.to(self.device)).float(), labels))
                else:
                    loss, _ = self.sssl_objective(batch)
                    if self.peer is not None:  # co-divide: the peer on the partition of the model's losses
                        loss = loss + self.peer_streams.run(lambda: self.sssl_objective(
                            batch, self.modules.peer, self.peer_partition or (None, None, None),
                            self.peer_streams.mix_generator)[0])
            scaled_loss = self.scaler.scale(loss / self.grad_accumulation_factor)
            self.check_loss_isfinite(scaled_loss)
            scaled_loss.backward()
        if should_step:
            self.optimizers_step()
        self.on_fit_batch_end(batch, None, loss, should_step)
        return loss.detach().cpu()

    # ------------------------------------------------------------ partition
    def segment_losses(self, dataset, model=None):
        """Per-segment cross-entropy (N,) and probabilities (N, K) (eval mode, no grad), in dataset order,
        of ``model`` (default: the serving model).

        Under DDP each rank computes a strided shard and the results are gathered, so every rank
        returns the losses of all segments.
        """
        n, k = len(dataset), int(self.hparams.n_classes)
        positions = shard_positions(n)
        if isinstance(dataset, DeviceSegments):
            passes = self._eval_logits(dataset, positions=positions, model=model)
        else:
            passes = self._eval_logits(torch.utils.data.Subset(dataset, positions), model=model)
        losses, probs, order = [torch.zeros(0)], [torch.zeros(0, k)], [torch.zeros(0, dtype=torch.long)]
        for batch, logits in passes:
            labels = batch.label.data[:, 0].to(self.device)
            losses.append(F.cross_entropy(logits, labels, reduction="none").cpu())
            probs.append(torch.softmax(logits, dim=-1).cpu())
            order.append(batch.index.data[:, 0].cpu())
        return gather_in_order(torch.cat(order), n, torch.cat(losses), torch.cat(probs))

    def compute_partition(self, epoch, model=None, report=True):
        """The partition pass of this epoch (Eq. 3) on the losses of ``model`` (default: the serving
        model), reported unless ``report`` is False; returns ``(PartitionResult, probs)``.

        ``probs``: the pass's class probabilities (N, K), the epoch-start predictions of
        ``pseudo_labels: co_guess/epoch`` and ``refine_labels``.
        """
        hp = self.hparams
        losses, probs = self.segment_losses(self.train_dataset, model)
        result = failure = None
        if if_main_process():
            try:
                result = partition_segments(
                    losses, self.train_labels, int(hp.n_classes), tau=float(hp.tau),
                    per_class=bool(hp.gmm_per_class), seed=int(hp.seed) + epoch,
                    **{k: getattr(hp, "gmm_" + k) for k in ("max_iter", "tol", "reg_covar")},
                    **partition_fallback_options(vars(hp)))
            except SSSLError as err:  # e.g. a NaN loss: every rank stops, not rank 0 alone
                failure = err
        result, failure = ddp_broadcast((result, failure), src=0)
        if failure is not None:
            raise failure
        if report:
            self.state.history = self.reporter.partition(epoch, result, probs, self.state.history)
        return result, probs

    def partition_epoch(self, epoch):
        """This epoch's partition(s), kept in the checkpointed state.

        With ``co_divide`` one pass per network, crossed (:func:`~.co_divide.crossed`): the model trains
        on the partition of the peer's losses, the peer on that of the model's; ``partition.csv``
        records the model's, with the mean of both networks' probabilities (the epoch-start co-guess).
        """
        result, probs = self.compute_partition(epoch, report=self.peer is None)
        peer_result = peer_probs = None
        if self.peer is not None:
            peer_result, peer_probs = self.compute_partition(epoch, self.serving_peer, report=False)
            result, peer_result = crossed(result, peer_result)
            both = co_guess(torch.as_tensor(probs), torch.as_tensor(peer_probs)).numpy()
            self.state.history = self.reporter.partition(epoch, result, both, self.state.history)
        self.state.keep(epoch, result, probs, peer_result, peer_probs)

    # ------------------------------------------------------------ stage hooks
    def on_stage_start(self, stage, epoch=None):
        """Seeds the epoch, sets its learning rate and, after the warm-up, computes the partition."""
        self.reporter.start_stage(self.device)
        if stage != sb.Stage.TRAIN:
            return
        seed = int(self.hparams.seed) * 1000 + int(epoch)
        torch.manual_seed(seed)
        self.mix_generator.manual_seed(seed)
        self.epoch_lr = set_epoch_lr(self.optimizer, getattr(self.hparams, "lr_annealing", None), epoch)
        if self.peer is not None:  # its own optimiser and random streams, the model's schedule
            set_epoch_lr(self.peer_optimizer, getattr(self.hparams, "lr_annealing", None), epoch)
            self.peer_streams.seed(seed + PEER_SEED_OFFSET)
        self.clean_mask = self.clean_prob = self.epoch_probs = self.peer_partition = None
        if self.uses_partition(epoch):
            if self.state.epoch != epoch or self.state.clean is None:  # else resumed inside this epoch
                self.partition_epoch(epoch)
            state, device = self.state, self.device
            self.clean_mask, self.clean_prob = state.clean.to(device), state.clean_prob.to(device)
            self.epoch_probs = state.probs.to(device) if state.probs is not None else None
            if self.peer is not None:
                self.peer_partition = (state.peer_clean.to(device), state.peer_clean_prob.to(device),
                                       state.peer_probs.to(device))
        self._train_started = synchronized_clock(self.device)  # the epoch's training steps start now

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Reports the stage; at the end of an epoch, saves its checkpoint."""
        if stage == sb.Stage.TRAIN:
            self.timing["train_step_seconds"] += synchronized_clock(self.device) - self._train_started
            self.timing["train_segments_seen"] += len(self.train_labels)
            self.timing["epochs_run"] += 1
            self.train_loss = stage_loss
            self.reporter.end_train_stage()
            self.state.epoch, self.state.clean = epoch, None  # a finished epoch's partition is never reused
            if self.valid_is_absent:
                self._end_of_epoch(epoch, {})
        elif stage == sb.Stage.VALID:
            self._end_of_epoch(epoch, self.reporter.stage_stats(stage_loss, epoch, valid=True))
        else:
            self.reporter.log_test(self.hparams.epoch_counter.current, self.reporter.stage_stats(stage_loss))

    def _end_of_epoch(self, epoch, valid_stats):
        self.reporter.end_of_epoch(epoch, self.uses_partition(epoch), getattr(self, "epoch_lr", None),
                                   self.train_loss, valid_stats, self.state)
        if self.checkpointer is not None:
            hp = self.hparams
            selection.save_epoch_checkpoint(self.checkpointer, epoch, valid_stats, hp.selection_metric,
                                            self.valid_is_absent, self.warmup_snapshot, hp.warmup_epochs)

    def recover_selected(self):
        """Loads the checkpoint that ``selection_metric`` selects (:func:`.selection.recover_selected`)."""
        return selection.recover_selected(self.checkpointer, self.hparams.selection_metric, self.method,
                                          self.hparams.warmup_epochs, self.valid_is_absent,
                                          scope=self.hparams.selection_scope)

    @property
    def valid_is_absent(self):
        """True when ``fit`` got no validation set (checkpoints are then saved after training)."""
        return getattr(self, "_no_valid", False)

    # ------------------------------------------------------------ inference
    def _eval_logits(self, dataset, batch_size=None, positions=None, model=None):
        """Yields ``(batch, logits)`` of ``model`` (default: the serving model) over ``dataset`` in
        order: eval mode, no grad, no augmentation.

        ``positions`` (a :class:`DeviceSegments` only): the segments to run, in this order.
        """
        model = self.serving_model if model is None else model
        batch_size = int(batch_size or self.hparams.partition_batch_size)
        if isinstance(dataset, DeviceSegments):
            loader = dataset.loader(batch_size, positions=positions)
        else:
            loader = sb.dataio.dataloader.make_dataloader(
                dataset, batch_size=batch_size, shuffle=False, collate_fn=sb.dataio.batch.PaddedBatch)
        was_training = self.modules.training
        self.modules.eval()
        try:
            with torch.inference_mode(), self.evaluation_ctx:
                for batch in loader:
                    yield batch, model(batch.feats.data.to(self.device)).float()
        finally:
            self.modules.train(was_training)

    def predict_probs(self, dataset, batch_size=None):
        """Class probabilities of every segment of ``dataset``, in dataset order (eval mode)."""
        out = [torch.softmax(logits, -1).cpu() for _, logits in self._eval_logits(dataset, batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, int(self.hparams.n_classes)))
