"""Memory task: delayed recall, where the answer was shown 50 to 99 steps earlier.

Each sequence is 100 tokens: lowercase distractors (``a``-``h``), one capital letter
(``A``-``H``) 50 to 99 steps before the end, and a ``?`` as the last token. At the
``?`` the model must name the capital letter (one of 8, so chance is 1/8). Nothing
between the capital and the end says anything about it, so the only way to learn the
task is for the loss at the end to send a gradient back 50 to 99 steps.

The two runs are the same LSTM, trained on the same batches from the same weights, and
differ in one choice: how the gate biases start.

- ``forget_bias_1``: the common advice, forget-gate bias 1 (the forget gate starts near
  sigmoid(1) = 0.73). dL/dc_t shrinks by about that factor per step back, so 50 steps
  back it is about 1e-7 of its value at the end: the gradient never reaches the
  capital and the model stays at chance.
- ``chrono``: the chrono initialisation (Tallec & Ollivier, "Can recurrent neural
  networks warp time?", ICLR 2018): per unit, forget-gate bias log(u) with u uniform in
  [1, 99] and input-gate bias its negative. Forget gates start between 0.5 and 0.99,
  so units remember for 1 to 99 steps, and the gradient reaches the whole sequence.

Each epoch the probe batch's states are logged with their gradients
(`StateWriter.log(..., loss=...)`), so the tab's gradient-through-time view shows
dL/dc_t dying within about 15 steps in one run and spanning all 100 in the other.
"""

import numpy as np
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

import tb_lstm_states as tls
from demo import common
from tb_lstm_states.storage import gradients

TASK = "memory"
TAG = "recall_lstm"
VALUES = "ABCDEFGH"
DISTRACTORS = "abcdefgh"
QUERY = "?"
VOCAB = VALUES + DISTRACTORS + QUERY
CHAR_TO_ID = {c: i for i, c in enumerate(VOCAB)}

# Every sequence is SEQUENCE_LENGTH tokens, the last one the query; the capital is
# BACK steps before it, BACK in [MIN_BACK, MAX_BACK].
SEQUENCE_LENGTH = 100
MIN_BACK = 50
MAX_BACK = SEQUENCE_LENGTH - 1

# The training set, the held-out set the accuracy is measured on, the probe batch.
TRAIN_SEQUENCES = 4096
TEST_SEQUENCES = 1024
TEST_SEED = 4242
BATCH_SIZE = 32
STEPS_PER_EPOCH = 40
EPOCHS = 12
LR = 0.01
PROBE_SEQUENCES = 8
PROBE_SEED = 77
EMBEDDING_SIZE = 16
HIDDEN_SIZE = 32
# Seeds the chrono biases apart from the model's weights, so that both runs start
# from the same weights and differ in the gate biases only.
CHRONO_SEED = 1

# The early/late gradient ratio compares the first and the last EDGE_FRACTION of the
# timesteps.
EDGE_FRACTION = 0.1

ACCURACY_TAG = "accuracy/test"

# The runs differ in how the LSTM's gate biases start (see the module docstring).
RUNS = (("chrono", "chrono"), ("forget_bias_1", "forget_bias_1"))

DESCRIPTION = """\
**Delayed recall.** An LSTM (%(hidden)d units) reads %(length)d tokens: lowercase
distractors, one capital letter %(min_back)d to %(max_back)d steps before the end (the
`capital` series marks it) and a final `?`, where it must name the capital (1 in 8 by
chance). This run's gate biases start as %(init)s. Open the gradient through time:
dL/dc_t of the loss at the `?`, one row per unit, on a log scale. Where it fades
within a few steps of the end, no training signal reaches the capital and the task
cannot be learned; where it spans the sequence, it can. Compare the two runs' gradient
reach and their memory horizons."""

INIT_TEXT = {
    "chrono": "the chrono initialisation (forget-gate bias log(u), u uniform in [1, %d], "
    "input-gate bias its negative)" % (SEQUENCE_LENGTH - 1),
    "forget_bias_1": "forget-gate bias 1, the others PyTorch's default",
}


def generate(rng, sequences, backs=None):
    """Returns `(ids [sequences, length], answers [sequences], positions [sequences])`.

    `answers` are the capitals' ids (0 to 7, also the class to predict) and
    `positions` their timesteps; `backs`, when given, fixes how many steps before the
    end each capital is.
    """
    length = SEQUENCE_LENGTH
    ids = rng.integers(len(VALUES), len(VALUES) + len(DISTRACTORS), size=(sequences, length))
    answers = rng.integers(0, len(VALUES), size=sequences)
    if backs is None:
        backs = rng.integers(MIN_BACK, MAX_BACK + 1, size=sequences)
    positions = length - 1 - np.asarray(backs, dtype=np.int64)
    ids[np.arange(sequences), positions] = answers
    ids[:, -1] = CHAR_TO_ID[QUERY]
    return ids, answers, positions


def probe_batch():
    """The fixed probe batch: ids, answers, capital positions, and tokens to show.

    Its capitals are spread evenly from MIN_BACK to MAX_BACK steps before the end.
    """
    backs = np.round(np.linspace(MIN_BACK, MAX_BACK, PROBE_SEQUENCES)).astype(np.int64)
    ids, answers, positions = generate(np.random.default_rng(PROBE_SEED), PROBE_SEQUENCES, backs)
    tokens = [[VOCAB[i] for i in row] for row in ids]
    return ids, answers, positions, tokens


def capital_marks(positions):
    """The `capital` series: 1 at each probe sequence's capital, 0 elsewhere."""
    marks = np.zeros((len(positions), SEQUENCE_LENGTH), dtype=np.float32)
    marks[np.arange(len(positions)), positions] = 1.0
    return marks


class RecallModel(nn.Module):
    """Embedding, one LSTM layer, a linear readout of the capital at the last step."""

    def __init__(self, init, hidden_size=HIDDEN_SIZE, embedding_size=EMBEDDING_SIZE):
        super().__init__()
        self.embedding = nn.Embedding(len(VOCAB), embedding_size)
        self.lstm = nn.LSTM(embedding_size, hidden_size, batch_first=True)
        self.readout = nn.Linear(hidden_size, len(VALUES))
        init_gate_biases(self.lstm, init)

    def answer(self, output):
        """The logits of the capital from the LSTM's output `[batch, time, hidden]`."""
        return self.readout(output[:, -1])

    def forward(self, ids):
        output, _ = self.lstm(self.embedding(ids))
        return self.answer(output)


def init_gate_biases(lstm, init):
    """Sets the input and forget gate biases of a one-layer `lstm` as `init` says.

    PyTorch's LSTM adds two biases; the chosen value goes into `bias_ih`, and the
    same slice of `bias_hh` is zeroed so that it is the whole bias. The chrono biases
    are drawn from their own generator: the model's other weights are the same
    whichever `init`.
    """
    hidden = lstm.hidden_size
    # PyTorch's gate order is input, forget, cell, output.
    input_gate, forget_gate = slice(0, hidden), slice(hidden, 2 * hidden)
    with torch.no_grad():
        if init == "forget_bias_1":
            lstm.bias_ih_l0[forget_gate] = 1.0
            lstm.bias_hh_l0[forget_gate] = 0.0
        elif init == "chrono":
            generator = torch.Generator().manual_seed(CHRONO_SEED)
            u = torch.rand(hidden, generator=generator) * (SEQUENCE_LENGTH - 2) + 1
            lstm.bias_ih_l0[forget_gate] = torch.log(u)
            lstm.bias_ih_l0[input_gate] = -torch.log(u)
            lstm.bias_hh_l0[forget_gate] = 0.0
            lstm.bias_hh_l0[input_gate] = 0.0
        else:
            raise ValueError("unknown init %r; choose from %s" % (init, [n for n, _ in RUNS]))


def gradient_norms(grads):
    """‖dL/dstate_t‖ over units, `[batch, time]`, in float64, from `[batch, time, units]`."""
    grads = np.asarray(grads, dtype=np.float64)
    return np.sqrt(np.einsum("btu,btu->bt", grads, grads))


def early_late_ratio(grads):
    """The early/late gradient ratio of a full-length probe batch's gradients.

    Per sequence, the mean of ‖dL/dc_t‖ over the first EDGE_FRACTION of the
    timesteps divided by its mean over the last EDGE_FRACTION; the median over the
    sequences. Near 1 when the gradient reaches the start, tiny when it vanishes.
    """
    norms = gradient_norms(grads)
    edge = max(1, round(EDGE_FRACTION * norms.shape[1]))
    early = norms[:, :edge].mean(axis=1)
    late = norms[:, -edge:].mean(axis=1)
    return float(np.median(early / late))


def gradient_reach(grads):
    """How many timesteps back from the end the gradient of a full-length probe batch
    reaches: the tab's own figure (`storage.gradients.reach`), the steps back over
    which the norm over units, averaged over the sequences, stays at or above 1% of
    its largest value."""
    batch, time = np.shape(grads)[:2]
    return gradients.reach(grads, [time] * batch)


def long_memory_units(forget, steps=MIN_BACK):
    """How many units have a memory horizon of at least `steps` timesteps.

    A unit's memory horizon is -1/ln(mean forget gate), as the tab's units route
    gives it (`memory_horizon`), here over the full-length probe batch
    `[batch, time, units]`; a mean forget gate at or above exp(-1/steps) is such a
    horizon, saturated ones (which the route leaves null) included.
    """
    mean = np.asarray(forget, dtype=np.float64).mean(axis=(0, 1))
    return int(np.sum(mean >= np.exp(-1.0 / steps)))


def accuracy(model, ids, answers):
    """The share of `ids`' capitals `model` names, in eval mode without autograd."""
    model.eval()
    with torch.no_grad():
        return float((model(ids).argmax(-1) == answers).float().mean())


def train_run(logdir, name, init, *, epochs=EPOCHS, seed=0, log=print, lr=LR):
    """Trains one run and logs scalars, states and gradients into `logdir/memory/name`.

    The gradient figures (reach, early/late ratio) are not computed here: they are
    read back from the logdir (`demo.story`), as the tab reads them. Returns a dict of
    the final figures: probe loss and held-out accuracy.
    """
    rng = common.setup(seed)
    train_ids, train_answers, _ = generate(rng, TRAIN_SEQUENCES)
    train_ids = torch.from_numpy(train_ids)
    train_answers = torch.from_numpy(train_answers)
    test_ids, test_answers, _ = generate(np.random.default_rng(TEST_SEED), TEST_SEQUENCES)
    test_ids = torch.from_numpy(test_ids)
    test_answers = torch.from_numpy(test_answers)
    probe_ids, probe_answers, probe_positions, probe_tokens = probe_batch()
    probe_ids = torch.from_numpy(probe_ids)
    probe_answers = torch.from_numpy(probe_answers)
    marks = capital_marks(probe_positions)
    model = RecallModel(init)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    description = DESCRIPTION % {
        "hidden": HIDDEN_SIZE,
        "length": SEQUENCE_LENGTH,
        "min_back": MIN_BACK,
        "max_back": MAX_BACK,
        "init": INIT_TEXT[init],
    }

    def probe_loss(output):
        # The task's loss on the probe batch, from the LSTM's output as tls.capture
        # hands it over, so the logged gradients are the ones training follows.
        return nn.functional.cross_entropy(model.answer(output), probe_answers)

    summary_writer = SummaryWriter(common.run_dir(logdir, TASK, name))
    result = {}
    with tls.StateWriter(summary_writer=summary_writer) as state_writer:
        for epoch in range(epochs + 1):
            # Step 0 is the untrained model: where the gradient reaches from the start.
            if epoch > 0:
                model.train()
                total_loss = 0.0
                for _ in range(STEPS_PER_EPOCH):
                    batch = torch.randint(0, TRAIN_SEQUENCES, (BATCH_SIZE,))
                    loss = nn.functional.cross_entropy(
                        model(train_ids[batch]), train_answers[batch]
                    )
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                    total_loss += loss.item()
                summary_writer.add_scalar("loss/train", total_loss / STEPS_PER_EPOCH, epoch)
            test_accuracy = accuracy(model, test_ids, test_answers)
            with torch.no_grad():
                loss_value = nn.functional.cross_entropy(model(probe_ids), probe_answers).item()
                # Without autograd: the gradients to log are the states', not the embedding's.
                embedded = model.embedding(probe_ids)
            state_writer.log(
                TAG,
                model.lstm,
                embedded,
                epoch,
                loss=probe_loss,
                tokens=probe_tokens,
                series={"capital": marks},
                description=description,
            )
            summary_writer.add_scalar(ACCURACY_TAG, test_accuracy, epoch)
            summary_writer.add_scalar("loss/probe", loss_value, epoch)
            result = {"loss": loss_value, "accuracy": test_accuracy}
            log(
                "%s/%s epoch %2d: held-out accuracy %.3f, probe loss %.3f"
                % (TASK, name, epoch, test_accuracy, loss_value)
            )
    summary_writer.close()
    return result
