// What the tab shows before anything is logged: how to log states.

import { el } from "./dom";

export function howTo(status: HTMLElement): HTMLElement {
  const code = [
    "import tb_lstm_states as tls",
    'writer = tls.StateWriter("runs/exp1")',
    'writer.log("lstm", model.lstm, probe_inputs, step=epoch)',
  ].join("\n");
  return el("div", { class: "tls-empty" },
    el("h2", {}, "No recurrent states logged yet"),
    el("p", {}, "Log the per-timestep states of a recurrent layer on a fixed probe batch during training, for example once per epoch:"),
    el("pre", {}, code),
    el("p", {}, "Then point TensorBoard at the log directory (tensorboard --logdir runs). This tab checks for new data every few seconds."),
    status,
  );
}
