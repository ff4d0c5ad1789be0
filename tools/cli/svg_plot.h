// Small SVG charts for reports (the demo's loss curves and its forget-quality/utility picture):
// axes with ticks, polylines or points, a legend. No data logic here: it draws what it is given.
#pragma once

#include <string>
#include <vector>

namespace lethe::cli {

struct PlotSeries {
  std::string name;
  std::vector<double> x, y;
  bool points = false;  // markers instead of a line
};

struct PlotOptions {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;  // non-positive values are dropped on a log axis
  int width = 640, height = 400;
};

// A complete <svg> document.
std::string svg_plot(const std::vector<PlotSeries>& series, const PlotOptions& options);

}  // namespace lethe::cli
