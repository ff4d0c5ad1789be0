// SVG line and scatter charts.
#include "tools/cli/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace lethe::cli {

namespace {

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                         "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<')
      o += "&lt;";
    else if (c == '>')
      o += "&gt;";
    else if (c == '&')
      o += "&amp;";
    else
      o += c;
  }
  return o;
}

std::string num(double v) {
  char b[32];
  const double a = std::fabs(v);
  if (a != 0 && (a < 1e-3 || a >= 1e5))
    std::snprintf(b, sizeof b, "%.0e", v);
  else
    std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  double map(double v, double a, double b) const {  // data → pixel in [a, b]
    const double t = log ? (std::log10(v) - lo) / (hi - lo) : (v - lo) / (hi - lo);
    return a + t * (b - a);
  }
  std::vector<double> ticks() const {
    std::vector<double> t;
    if (log) {
      for (double e = std::ceil(lo); e <= hi + 1e-9; e += std::max(1.0, std::floor((hi - lo) / 6)))
        t.push_back(std::pow(10.0, e));
      return t;
    }
    const double raw = (hi - lo) / 5, mag = std::pow(10.0, std::floor(std::log10(raw)));
    const double step = raw / mag < 2 ? 2 * mag : raw / mag < 5 ? 5 * mag : 10 * mag;
    for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step)
      t.push_back(std::fabs(v) < 1e-9 * step ? 0.0 : v);  // no "-0" from rounding
    return t;
  }
};

Axis make_axis(const std::vector<double>& values, bool log) {
  Axis a;
  a.log = log;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (double v : values) {
    if (!std::isfinite(v) || (log && v <= 0)) continue;
    const double w = log ? std::log10(v) : v;
    lo = std::min(lo, w);
    hi = std::max(hi, w);
  }
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-12) lo -= 0.5, hi += 0.5;
  const double pad = 0.05 * (hi - lo);
  a.lo = log ? std::floor(lo) : lo - pad;
  a.hi = log ? std::ceil(hi) : hi + pad;
  if (a.hi - a.lo < 1e-12) a.hi = a.lo + 1;
  return a;
}

}  // namespace

std::string svg_plot(const std::vector<PlotSeries>& series, const PlotOptions& o) {
  std::vector<double> xs, ys;
  for (const PlotSeries& s : series) {
    xs.insert(xs.end(), s.x.begin(), s.x.end());
    ys.insert(ys.end(), s.y.begin(), s.y.end());
    ys.insert(ys.end(), s.band_lo.begin(), s.band_lo.end());
    ys.insert(ys.end(), s.band_hi.begin(), s.band_hi.end());
  }
  const Axis ax = make_axis(xs, o.log_x), ay = make_axis(ys, o.log_y);
  const double left = 70, right = o.width - 150.0, top = 40, bottom = o.height - 50.0;
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << o.width << "\" height=\""
      << o.height << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << (left + right) / 2
      << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << esc(o.title) << "</text>\n";
  // Grid and ticks.
  for (double t : ax.ticks()) {
    const double x = ax.map(t, left, right);
    svg << "<line x1=\"" << x << "\" y1=\"" << top << "\" x2=\"" << x << "\" y2=\"" << bottom
        << "\" stroke=\"#e5e5e5\"/><text x=\"" << x << "\" y=\"" << bottom + 16
        << "\" text-anchor=\"middle\">" << num(t) << "</text>\n";
  }
  for (double t : ay.ticks()) {
    const double y = ay.map(t, bottom, top);
    svg << "<line x1=\"" << left << "\" y1=\"" << y << "\" x2=\"" << right << "\" y2=\"" << y
        << "\" stroke=\"#e5e5e5\"/><text x=\"" << left - 6 << "\" y=\"" << y + 4
        << "\" text-anchor=\"end\">" << num(t) << "</text>\n";
  }
  svg << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << right - left << "\" height=\""
      << bottom - top << "\" fill=\"none\" stroke=\"black\"/>\n"
      << "<text x=\"" << (left + right) / 2 << "\" y=\"" << o.height - 12
      << "\" text-anchor=\"middle\">" << esc(o.x_label) << "</text>\n"
      << "<text transform=\"translate(16," << (top + bottom) / 2
      << ") rotate(-90)\" text-anchor=\"middle\">" << esc(o.y_label) << "</text>\n";
  // Series and legend.
  auto visible = [&](double x, double y) {
    return std::isfinite(x) && std::isfinite(y) && !(o.log_x && x <= 0) && !(o.log_y && y <= 0);
  };
  for (size_t i = 0; i < series.size(); ++i) {
    const PlotSeries& s = series[i];
    const std::string color =
        s.color.empty() ? kColors[i % (sizeof kColors / sizeof *kColors)] : s.color;
    const bool marked = visible(s.mark_x, s.mark_y);
    const size_t n = std::min(s.x.size(), s.y.size());
    if (!s.points && s.band_lo.size() == n && s.band_hi.size() == n && n > 0) {
      std::ostringstream band;
      for (size_t k = 0; k < n; ++k)
        if (visible(s.x[k], s.band_hi[k]))
          band << ax.map(s.x[k], left, right) << ',' << ay.map(s.band_hi[k], bottom, top) << ' ';
      for (size_t k = n; k-- > 0;)
        if (visible(s.x[k], s.band_lo[k]))
          band << ax.map(s.x[k], left, right) << ',' << ay.map(s.band_lo[k], bottom, top) << ' ';
      svg << "<polygon fill=\"" << color << "\" fill-opacity=\"0.15\" stroke=\"none\" points=\""
          << band.str() << "\"/>\n";
    }
    std::ostringstream pts;
    for (size_t k = 0; k < n; ++k) {
      if (!visible(s.x[k], s.y[k])) continue;
      const double x = ax.map(s.x[k], left, right), y = ay.map(s.y[k], bottom, top);
      if (s.points)
        svg << "<circle cx=\"" << x << "\" cy=\"" << y << "\" r=\"" << (marked ? 3 : 5)
            << "\" fill=\"" << color << "\"" << (marked ? " fill-opacity=\"0.5\"" : "") << "/>\n";
      else
        pts << x << ',' << y << ' ';
    }
    if (marked)
      svg << "<circle cx=\"" << ax.map(s.mark_x, left, right) << "\" cy=\""
          << ay.map(s.mark_y, bottom, top) << "\" r=\"7\" fill=\"" << color
          << "\" stroke=\"black\" stroke-width=\"1.5\"/>\n";
    if (!s.points)
      svg << "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" << color << "\" points=\""
          << pts.str() << "\"/>\n";
    const double ly = top + 10 + 18.0 * static_cast<double>(i);
    svg << "<rect x=\"" << right + 12 << "\" y=\"" << ly - 9
        << "\" width=\"12\" height=\"12\" fill=\"" << color << "\"/><text x=\"" << right + 30
        << "\" y=\"" << ly + 1 << "\">" << esc(s.name) << "</text>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace lethe::cli
