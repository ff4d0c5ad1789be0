// Small SVG charts for reports (the demo's loss curves and its forget-quality/utility picture):
// axes with ticks, polylines or points, a legend. No data logic here: it draws what it is given.
#pragma once

#include <limits>
#include <string>
#include <vector>

namespace lethe::cli {

struct PlotSeries {
  std::string name;
  std::vector<double> x, y;
  bool points = false;  // markers instead of a line
  std::string color;    // "#rrggbb"; empty: the palette's colour for the series' index
  // Lines: a shaded band between band_lo and band_hi at the same x (empty: none).
  std::vector<double> band_lo, band_hi;
  // Points: a larger outlined marker at (mark_x, mark_y) (NaN: none); the points are drawn small.
  double mark_x = std::numeric_limits<double>::quiet_NaN();
  double mark_y = std::numeric_limits<double>::quiet_NaN();
};

struct PlotOptions {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;  // non-positive values are dropped on a log axis
  int width = 640, height = 400;
};

// A complete <svg> document.
std::string svg_plot(const std::vector<PlotSeries>& series, const PlotOptions& options);

}  // namespace lethe::cli
