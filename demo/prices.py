"""Time-series task: an LSTM forecasting a price-like series with injected anomalies.

Each series is a price around 100 made of a daily cycle, mean-reverting noise and a
slow drift, with anomalies injected at known timesteps: jumps (a sudden lasting
shift of the level) and volatility bursts (a stretch where the noise is several
times larger). The model reads the scaled price changes and predicts the next one;
the prediction is logged beside the price as a series. The anomalies are what the
change track is for: where the input breaks its pattern, the cell state moves far
more than usual, and the robust z-score of that movement flags the timestep. The
injected onsets are logged as an `anomaly` series (1 at each onset) to check by eye.
"""

import numpy as np
import torch
from sklearn import metrics
from torch import nn
from torch.utils.tensorboard import SummaryWriter

import tb_lstm_states as tls
from demo import common
from tb_lstm_states import analysis

TASK = "prices"
TAG = "price_lstm"

# The series, in log-price units.
PERIOD = 24  # a "day" of hourly prices
SEASONAL_AMPLITUDE = (0.004, 0.012)
AR_COEFFICIENT = 0.8
NOISE = 0.003
DRIFT = 0.0005
JUMP_SIZE = (8.0, 14.0)  # in units of NOISE
BURST_FACTOR = (4.0, 7.0)
BURST_LENGTH = (8, 16)
MIN_GAP = 30  # between anomaly onsets, and from the start
# Price changes are fed to the model divided by this.
SCALE = 0.004

TRAIN_SEQUENCES = 2000
TRAIN_LENGTH = 200
TRAIN_ANOMALIES = (0, 2)  # per training sequence, inclusive
BATCH_SIZE = 32
STEPS_PER_EPOCH = 40
PROBE_SEQUENCES = 8
PROBE_LENGTH = 320
PROBE_JUMPS = 2
PROBE_BURSTS = 1
PROBE_SEED = 31
EPOCHS = 20
LR = 0.005

# An injected anomaly counts as found when the change track flags a timestep within
# this many steps after its onset.
TOLERANCE = 3

# The two runs differ in the hidden size only.
RUNS = (("hidden_32", 32), ("hidden_8", 8))

DESCRIPTION = """\
**Prices with injected anomalies.** An LSTM (%(hidden)d units) reads hourly price
changes (a daily cycle, mean-reverting noise, a slow drift) and predicts the next
price: compare the `price` and `prediction` series. Each probe series carries %(jumps)d
jumps and %(bursts)d volatility burst, marked 1 in the `anomaly` series. Open the
change track of the cell state: it flags the timesteps where the state moves far
more than usual (robust z-score above 3.5), and these fall on the injected anomalies."""


def _onsets(rng, length, count):
    """`count` onsets at least MIN_GAP apart and from the start, and room after the last."""
    slots = np.arange(MIN_GAP, length - BURST_LENGTH[1] - TOLERANCE)
    for _ in range(1000):
        onsets = np.sort(rng.choice(slots, size=count, replace=False))
        if count == 0 or np.all(np.diff(onsets) >= MIN_GAP):
            return onsets
    raise ValueError("no room for %d anomalies in %d timesteps" % (count, length))


def generate(rng, length, jumps, bursts):
    """Returns `(price [length], anomalies)`, anomalies a list of `(onset, kind, length)`."""
    onsets = _onsets(rng, length, jumps + bursts)
    kinds = ["jump"] * jumps + ["burst"] * bursts
    rng.shuffle(kinds)
    noise_scale = np.full(length, NOISE)
    level = np.zeros(length)
    anomalies = []
    for onset, kind in zip(onsets, kinds):
        if kind == "jump":
            size = rng.uniform(*JUMP_SIZE) * NOISE * rng.choice([-1.0, 1.0])
            level[onset:] += size
            anomalies.append((int(onset), "jump", 1))
        else:
            span = int(rng.integers(BURST_LENGTH[0], BURST_LENGTH[1] + 1))
            noise_scale[onset : onset + span] *= rng.uniform(*BURST_FACTOR)
            anomalies.append((int(onset), "burst", span))
    noise = np.zeros(length)
    shocks = rng.standard_normal(length) * noise_scale
    for t in range(1, length):
        noise[t] = AR_COEFFICIENT * noise[t - 1] + shocks[t]
    t = np.arange(length)
    seasonal = rng.uniform(*SEASONAL_AMPLITUDE) * np.sin(
        2 * np.pi * t / PERIOD + rng.uniform(0, 2 * np.pi)
    )
    drift = np.cumsum(rng.standard_normal(length) * DRIFT)
    price = 100.0 * np.exp(seasonal + noise + drift + level)
    return price, anomalies


def features(price):
    """The model's input: scaled log-price changes, `[..., time, 1]` (0 at t = 0)."""
    log_price = np.log(price)
    change = np.zeros_like(log_price)
    change[..., 1:] = np.diff(log_price, axis=-1) / SCALE
    return change[..., None].astype(np.float32)


def dataset(rng, sequences, length, anomalies_range):
    prices = []
    for _ in range(sequences):
        count = int(rng.integers(anomalies_range[0], anomalies_range[1] + 1))
        jumps = int(rng.integers(0, count + 1))
        price, _ = generate(rng, length, jumps, count - jumps)
        prices.append(price)
    return np.stack(prices)


def probe_batch():
    """The fixed probe batch: prices `[batch, time]` and the injected anomalies per sequence."""
    rng = np.random.default_rng(PROBE_SEED)
    pairs = [generate(rng, PROBE_LENGTH, PROBE_JUMPS, PROBE_BURSTS) for _ in range(PROBE_SEQUENCES)]
    return np.stack([p for p, _ in pairs]), [a for _, a in pairs]


def anomaly_marks(anomalies, length):
    marks = np.zeros((len(anomalies), length), dtype=np.float32)
    for b, sequence in enumerate(anomalies):
        for onset, _, _ in sequence:
            marks[b, onset] = 1.0
    return marks


class Forecaster(nn.Module):
    """One LSTM layer and a linear readout of the next scaled change."""

    def __init__(self, hidden_size):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden_size, batch_first=True)
        self.readout = nn.Linear(hidden_size, 1)

    def forward(self, x):
        output, _ = self.lstm(x)
        return self.readout(output)


def anomaly_recall(values, lengths, anomalies, threshold=analysis.DEFAULT_THRESHOLD):
    """How well the change track of `values` `[batch, time, units]` finds the anomalies.

    Uses `analysis.changes`, as the backend's `changes` route does, and scikit-learn's
    metrics. Returns a dict: `recall` (of the injected anomalies: found when a flag is
    at most TOLERANCE steps after their onset), `precision` (of the flagged timesteps:
    right when inside an anomaly, from its onset to TOLERANCE steps after its end),
    `found`, `total`, `flags`, and `by_kind` (recall per kind).
    """
    hits, kinds = [], []  # per injected anomaly: whether it was found, its kind
    flagged = np.zeros(values.shape[:2], dtype=bool)  # per timestep: flagged
    inside = np.zeros(values.shape[:2], dtype=bool)  # per timestep: in an anomaly
    for b, sequence in enumerate(anomalies):
        found_at = analysis.changes(values[b], int(lengths[b]), threshold)["anomalies"]
        flagged[b, found_at] = True
        for onset, kind, span in sequence:
            hits.append(bool(np.any((found_at >= onset) & (found_at <= onset + TOLERANCE))))
            kinds.append(kind)
            inside[b, onset : onset + span + TOLERANCE] = True
    hit = np.array(hits, dtype=bool)
    kind_of = np.array(kinds, dtype=object)
    flags = int(flagged.sum())

    def recall(found):
        if not len(found):
            return float("nan")
        return float(metrics.recall_score(np.ones(len(found), dtype=bool), found))

    return {
        "recall": recall(hit),
        "precision": (
            float(metrics.precision_score(inside.ravel(), flagged.ravel()))
            if flags
            else float("nan")
        ),
        "found": int(hit.sum()),
        "total": len(hit),
        "flags": flags,
        "by_kind": {k: recall(hit[kind_of == k]) for k in dict.fromkeys(kinds)},
    }


def train_run(logdir, name, hidden_size, *, epochs=EPOCHS, seed=0, log=print, lr=LR):
    """Trains one run and logs scalars and states into `logdir/prices/name`.

    Returns a dict of the final figures: loss, direction accuracy, anomaly recall.
    """
    rng = common.setup(seed)
    train = torch.from_numpy(
        features(dataset(rng, TRAIN_SEQUENCES, TRAIN_LENGTH + 1, TRAIN_ANOMALIES))
    )
    probe_price, probe_anomalies = probe_batch()
    probe_x = torch.from_numpy(features(probe_price))
    probe_lengths = np.full(PROBE_SEQUENCES, PROBE_LENGTH)
    marks = anomaly_marks(probe_anomalies, PROBE_LENGTH)
    model = Forecaster(hidden_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    description = DESCRIPTION % {
        "hidden": hidden_size,
        "jumps": PROBE_JUMPS,
        "bursts": PROBE_BURSTS,
    }
    summary_writer = SummaryWriter(common.run_dir(logdir, TASK, name))
    result = {}
    with tls.StateWriter(summary_writer=summary_writer) as state_writer:
        for epoch in range(epochs + 1):
            if epoch > 0:
                model.train()
                total_loss = 0.0
                for _ in range(STEPS_PER_EPOCH):
                    batch = train[torch.randint(0, len(train), (BATCH_SIZE,))]
                    # Huber loss: the bursts' large changes would dominate a squared error.
                    loss = nn.functional.smooth_l1_loss(model(batch[:, :-1]), batch[:, 1:])
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                    total_loss += loss.item()
                summary_writer.add_scalar("loss/train", total_loss / STEPS_PER_EPOCH, epoch)
            model.eval()
            with torch.no_grad():
                predicted = model(probe_x)  # predicted[:, t] forecasts the change at t + 1
            probe_loss = nn.functional.smooth_l1_loss(predicted[:, :-1], probe_x[:, 1:]).item()
            predicted_change = predicted[:, :-1, 0].numpy()
            actual_change = probe_x[:, 1:, 0].numpy()
            direction = float(np.mean(np.sign(predicted_change) == np.sign(actual_change)))
            # The forecast of the price at t, made at t - 1, aligned with the price.
            prediction = probe_price.copy()
            prediction[:, 1:] = probe_price[:, :-1] * np.exp(predicted_change * SCALE)
            states = tls.capture(model.lstm, probe_x)
            found = anomaly_recall(states.layers[0].cell.numpy(), probe_lengths, probe_anomalies)
            state_writer.add_states(
                TAG,
                states,
                epoch,
                series={
                    "price": probe_price.astype(np.float32),
                    "prediction": prediction.astype(np.float32),
                    "anomaly": marks,
                },
                description=description,
            )
            summary_writer.add_scalar("loss/probe", probe_loss, epoch)
            summary_writer.add_scalar("accuracy/direction", direction, epoch)
            summary_writer.add_scalar("change_track/recall", found["recall"], epoch)
            summary_writer.add_scalar("change_track/precision", found["precision"], epoch)
            result = {"loss": probe_loss, "direction": direction, **found}
            log(
                "%s/%s epoch %2d: probe loss %.4f, direction %.3f, "
                "anomaly recall %.2f (%d/%d), precision %.2f"
                % (
                    TASK,
                    name,
                    epoch,
                    probe_loss,
                    direction,
                    found["recall"],
                    found["found"],
                    found["total"],
                    found["precision"],
                )
            )
    summary_writer.close()
    return result
