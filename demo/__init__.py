"""The tb-lstm-states demo: two small LSTM tasks whose states tell a story.

Run it with  python -m demo --logdir runs/demo  (or `make demo`).
"""
