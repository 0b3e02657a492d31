"""Guidance Studio's desktop application (PySide6 + qasync): views over the `core` engine."""
import os

# Qt's raster engine hands every fill of over 96 scan lines (a pane's background, an image, a large polygon) to
# a pool of threads and waits for them. The app gives sampling all cores but one and paints on the one left, so
# the pool's threads wait for a core while the window waits for them: on a 2-core machine the GUI thread slept
# in these hand-offs during runs (py-spy), and the largest stalls were longer. Set before any painting (Qt reads
# it once, when the pool is first wanted), the fills stay on the GUI thread.
os.environ.setdefault("QT_NO_GUI_THREADPOOL", "1")
