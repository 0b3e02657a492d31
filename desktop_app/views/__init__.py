"""What the window paints: the x_t / x̂0 panes, 2-D point clouds, the data backdrop, per-step plots."""
