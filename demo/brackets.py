"""Text task: a character-level LSTM on generated nested brackets and quotes.

Each line of the text is one balanced expression over three bracket pairs, with
letters and quoted strings inside, ended by a newline, e.g. ``([ab"c)"]{d(e)})``.
Brackets inside quotes are plain characters and do not nest. The chance that the
next character closes a bracket grows with the nesting depth, and a line ends
exactly when the depth returns to zero, so predicting the next character pays for
knowing the depth. As the model trains, one unit of its cell state becomes a counter
of the depth: the classic interpretable cell, logged every epoch so the tab shows it
appear. The depth is logged as a series beside the characters, so the tab can sort
units by their correlation with it.
"""

import numpy as np
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

import tb_lstm_states as tls
from demo import common

TASK = "brackets"
TAG = "char_lstm"
OPEN = "([{"
CLOSE = ")]}"
LETTERS = "abcd"
QUOTE = '"'
NEWLINE = "\n"
VOCAB = OPEN + CLOSE + LETTERS + QUOTE + NEWLINE
CHAR_TO_ID = {c: i for i, c in enumerate(VOCAB)}
# How the characters show as tokens in the tab.
DISPLAY = {NEWLINE: "\u23ce"}

# p(close) = CLOSE_SLOPE * depth, so no line goes deeper than 1 / CLOSE_SLOPE.
CLOSE_SLOPE = 0.15
OPEN_SHARE = 0.6  # of what closing leaves
QUOTE_SHARE = 0.05
QUOTE_END = 0.25  # chance that a quoted string ends at each character
QUOTED_BRACKET = 0.15  # chance that a quoted character is a (literal) bracket

# The training set, the probe batch and the model.
SEQUENCE_LENGTH = 100
TRAIN_SEQUENCES = 3000
BATCH_SIZE = 32
STEPS_PER_EPOCH = 50
PROBE_SEQUENCES = 8
PROBE_LENGTH = 200
PROBE_SEED = 20260
EMBEDDING_SIZE = 16
HIDDEN_SIZE = 64
EPOCHS = 20
# The learning rate decays (cosine) to this fraction of its start by the last epoch,
# which settles the counter unit.
FINAL_LR_FRACTION = 0.1

# The two runs differ in the learning rate only: same shapes, so the tab can show a
# difference heatmap, and the counter appears at different epochs.
RUNS = (("lr_0.01", 0.01), ("lr_0.002", 0.002))

DESCRIPTION = """\
**Nested brackets.** A character-level LSTM (%(hidden)d units) predicts the next
character of generated lines such as `([ab"c)"]{d(e)})`. The chance of a closing
bracket grows with the nesting depth and a line ends exactly when the depth is back
to zero, so the model gains from counting. Sort the units by correlation with the
`depth` series: one unit's cell state comes to follow the depth (|r| above 0.9 by
the last epoch at lr 0.01). Play the steps to watch it appear, and compare with
the run at lr 0.002."""


def generate(rng, length):
    """Returns `(text, depth)`: `length` characters from line starts, and the depth after each.

    Quotes do not count as nesting, and brackets inside quotes are literal characters.
    """
    chars = []
    depth = np.zeros(length, dtype=np.int64)
    stack = []
    in_quote = False
    for t in range(length):
        d = len(stack)
        u = rng.random()
        if in_quote:
            if u < QUOTE_END:
                c, in_quote = QUOTE, False
            elif u < QUOTE_END + QUOTED_BRACKET:
                c = (OPEN + CLOSE)[rng.integers(6)]
            else:
                c = LETTERS[rng.integers(len(LETTERS))]
        elif d == 0:
            # A line ends when its expression closes; the next one opens at once.
            if chars and chars[-1] in CLOSE:
                c = NEWLINE
            else:
                c = OPEN[rng.integers(3)]
                stack.append(c)
        else:
            p_close = min(1.0, CLOSE_SLOPE * d)
            p_open = (1.0 - p_close) * OPEN_SHARE
            p_quote = (1.0 - p_close) * QUOTE_SHARE
            if u < p_close:
                c = CLOSE[OPEN.index(stack.pop())]
            elif u < p_close + p_open:
                c = OPEN[rng.integers(3)]
                stack.append(c)
            elif u < p_close + p_open + p_quote:
                c, in_quote = QUOTE, True
            else:
                c = LETTERS[rng.integers(len(LETTERS))]
        chars.append(c)
        depth[t] = len(stack)
    return "".join(chars), depth


def encode(text):
    return np.fromiter((CHAR_TO_ID[c] for c in text), dtype=np.int64, count=len(text))


def dataset(rng, sequences, length):
    """`(ids [sequences, length], depth [sequences, length])`, each sequence from a line start."""
    pairs = [generate(rng, length) for _ in range(sequences)]
    ids = np.stack([encode(text) for text, _ in pairs])
    depth = np.stack([d for _, d in pairs])
    texts = [text for text, _ in pairs]
    return ids, depth, texts


def probe_batch():
    """The fixed probe batch every run logs: ids, depth and the tokens to show."""
    ids, depth, texts = dataset(np.random.default_rng(PROBE_SEED), PROBE_SEQUENCES, PROBE_LENGTH)
    tokens = [[DISPLAY.get(c, c) for c in text] for text in texts]
    return ids, depth, tokens


class CharModel(nn.Module):
    """Embedding, one LSTM layer, a linear readout of the next character."""

    def __init__(self, hidden_size=HIDDEN_SIZE, embedding_size=EMBEDDING_SIZE):
        super().__init__()
        self.embedding = nn.Embedding(len(VOCAB), embedding_size)
        self.lstm = nn.LSTM(embedding_size, hidden_size, batch_first=True)
        self.readout = nn.Linear(hidden_size, len(VOCAB))

    def forward(self, ids):
        output, _ = self.lstm(self.embedding(ids))
        return self.readout(output)


def depth_correlation(cell, depth):
    """`(unit, r)`: the cell unit whose value correlates most with the depth, and its r."""
    r = common.unit_correlations(cell, depth)
    unit = int(np.argmax(np.abs(r)))
    return unit, float(r[unit])


def train_run(
    logdir, name, lr, *, epochs=EPOCHS, seed=0, log=print, final_lr_fraction=FINAL_LR_FRACTION
):
    """Trains one run and logs scalars and states into `logdir/brackets/name`.

    Returns a dict of the final figures: loss, accuracy, unit, r.
    """
    rng = common.setup(seed)
    ids, _, _ = dataset(rng, TRAIN_SEQUENCES, SEQUENCE_LENGTH + 1)
    ids = torch.from_numpy(ids)
    probe_ids, probe_depth, probe_tokens = probe_batch()
    probe_ids = torch.from_numpy(probe_ids)
    model = CharModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    # Cosine decay of the learning rate to `final_lr_fraction` of it by the last epoch.
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, epochs * STEPS_PER_EPOCH), eta_min=lr * final_lr_fraction
    )
    description = DESCRIPTION % {"hidden": HIDDEN_SIZE}
    run = common.run_dir(logdir, TASK, name)
    summary_writer = SummaryWriter(run)
    result = {}
    with tls.StateWriter(summary_writer=summary_writer) as state_writer:
        for epoch in range(epochs + 1):
            # Step 0 is the untrained model: the tab starts from noise.
            if epoch > 0:
                model.train()
                total_loss = total_correct = total_count = 0.0
                for _ in range(STEPS_PER_EPOCH):
                    batch = ids[torch.randint(0, len(ids), (BATCH_SIZE,))]
                    logits = model(batch[:, :-1])
                    targets = batch[:, 1:]
                    loss = nn.functional.cross_entropy(
                        logits.reshape(-1, len(VOCAB)), targets.reshape(-1)
                    )
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                    scheduler.step()
                    total_loss += loss.item()
                    total_correct += (logits.argmax(-1) == targets).sum().item()
                    total_count += targets.numel()
                summary_writer.add_scalar("loss/train", total_loss / STEPS_PER_EPOCH, epoch)
                summary_writer.add_scalar("accuracy/train", total_correct / total_count, epoch)
            model.eval()
            with torch.no_grad():
                embedded = model.embedding(probe_ids)
                logits = model(probe_ids)
                probe_loss = nn.functional.cross_entropy(
                    logits[:, :-1].reshape(-1, len(VOCAB)), probe_ids[:, 1:].reshape(-1)
                ).item()
                probe_accuracy = (
                    (logits[:, :-1].argmax(-1) == probe_ids[:, 1:]).float().mean().item()
                )
            states = tls.capture(model.lstm, embedded)
            unit, r = depth_correlation(states.layers[0].cell.numpy(), probe_depth)
            state_writer.add_states(
                TAG,
                states,
                epoch,
                tokens=probe_tokens,
                series={"depth": probe_depth.astype(np.float32)},
                description=description,
            )
            summary_writer.add_scalar("loss/probe", probe_loss, epoch)
            summary_writer.add_scalar("accuracy/probe", probe_accuracy, epoch)
            summary_writer.add_scalar("depth_unit/abs_r", abs(r), epoch)
            result = {"loss": probe_loss, "accuracy": probe_accuracy, "unit": unit, "r": r}
            log(
                "%s/%s epoch %2d: probe loss %.3f, accuracy %.3f, depth unit %d r=%+.3f"
                % (TASK, name, epoch, probe_loss, probe_accuracy, unit, r)
            )
    summary_writer.close()
    return result
