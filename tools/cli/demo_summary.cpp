// The demo's table and plots from its summary.json (see demo_summary.h).
#include "tools/cli/demo_summary.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "engine/error.h"
#include "engine/io/file_util.h"
#include "tools/cli/svg_plot.h"

namespace lethe::cli {

namespace {

std::vector<double> values(const nlohmann::json& model, const std::string& metric) {
  std::vector<double> v;
  for (const nlohmann::json& x : model.at(metric))
    v.push_back(x.is_number() ? x.get<double>() : std::nan(""));
  return v;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? std::nan("") : s / static_cast<double>(v.size());
}

double sample_sd(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string fixed3(double v) {
  char b[32];
  if (!std::isfinite(v)) return "–";
  std::snprintf(b, sizeof b, "%.3f", v);
  return b;
}

// A KS p-value: three decimals, or two significant digits below 1e-3.
std::string pvalue(double v) {
  char b[32];
  if (!std::isfinite(v) || v < 0) return "–";
  std::snprintf(b, sizeof b, v < 1e-3 ? "%.1e" : "%.3f", v);
  return b;
}

// One cell over the seeds' values; a value a run did not produce (null, NaN) is left out and
// counted: "0.600 ± 0.100 (2 of 3)"; none at all is "–".
std::string cell(const std::vector<double>& all, bool is_pvalue) {
  std::vector<double> v;
  for (double x : all)
    if (std::isfinite(x)) v.push_back(x);
  if (v.empty()) return "–";
  std::string out;
  if (all.size() == 1)
    out = is_pvalue ? pvalue(v[0]) : fixed3(v[0]);
  else if (is_pvalue)
    out = pvalue(median(v)) + " [" + pvalue(*std::min_element(v.begin(), v.end())) + ", " +
          pvalue(*std::max_element(v.begin(), v.end())) + "]";
  else
    out = fixed3(mean(v)) + " ± " + fixed3(sample_sd(v));
  if (v.size() < all.size())
    out += " (" + std::to_string(v.size()) + " of " + std::to_string(all.size()) + ")";
  return out;
}

}  // namespace

std::string demo_table(const nlohmann::json& summary) {
  const size_t seeds = summary.at("seeds").size();
  if (seeds == 0) throw Error("demo summary: no seeds");
  std::ostringstream t;
  t << "| model | forget quality ↑ | model utility ↑ | forget ROUGE-L ↓ | retain ROUGE-L ↑ | "
       "forget prob ↓ |\n|---|---|---|---|---|---|\n";
  for (const nlohmann::json& m : summary.at("models")) {
    t << "| " << m.at("name").get<std::string>();
    for (const std::string& metric : demo_metrics()) {
      const std::vector<double> v = values(m, metric);
      if (v.size() != seeds)
        throw Error("demo summary: model " + m.at("name").get<std::string>() + " has " +
                    std::to_string(v.size()) + " values of " + metric + " for " +
                    std::to_string(seeds) + " seeds");
      t << " | " << cell(v, metric == "forget_quality");
    }
    t << " |\n";
  }
  return t.str();
}

std::string demo_color(const std::string& model) {
  static const std::map<std::string, std::string> c = {
      {"target", "#000000"},   {"retain-only", "#7f7f7f"}, {"ga", "#1f77b4"},
      {"graddiff", "#ff7f0e"}, {"npo", "#2ca02c"},         {"simnpo", "#d62728"},
      {"mollm", "#9467bd"},    {"ngdiff", "#8c564b"}};
  const auto it = c.find(model);
  return it == c.end() ? "#17becf" : it->second;
}

void write_demo_plots(const nlohmann::json& summary, const std::string& dir) {
  std::vector<PlotSeries> pareto, forget_curves, retain_curves;
  for (const nlohmann::json& m : summary.at("models")) {
    const std::string name = m.at("name");
    PlotSeries p;
    p.name = name;
    p.points = true;
    p.color = demo_color(name);
    for (double x : values(m, "forget_quality")) p.x.push_back(std::max(x, 1e-30));
    p.y = values(m, "model_utility");
    if (p.x.size() > 1) {
      p.mark_x = median(p.x);
      p.mark_y = mean(p.y);
    }
    pareto.push_back(p);
    if (!m.contains("curves") || m["curves"].empty()) continue;
    // Every seed's curve has the same steps; the line is the mean, the band min–max.
    for (const char* which : {"forget_nll", "retain_nll"}) {
      PlotSeries s;
      s.name = name;
      s.color = demo_color(name);
      const nlohmann::json& curves = m["curves"];
      size_t n = curves[0].at("step").size();
      for (const nlohmann::json& c : curves) n = std::min(n, c.at(which).size());
      for (size_t k = 0; k < n; ++k) {
        std::vector<double> at;
        for (const nlohmann::json& c : curves)
          if (c.at(which)[k].is_number()) at.push_back(c.at(which)[k].get<double>());
        if (at.empty()) continue;
        s.x.push_back(curves[0]["step"][k].get<double>());
        s.y.push_back(mean(at));
        if (curves.size() > 1) {
          s.band_lo.push_back(*std::min_element(at.begin(), at.end()));
          s.band_hi.push_back(*std::max_element(at.begin(), at.end()));
        }
      }
      (std::string(which) == "forget_nll" ? forget_curves : retain_curves).push_back(s);
    }
  }
  const size_t seeds = summary.at("seeds").size();
  const std::string over =
      seeds > 1 ? " (" + std::to_string(seeds) + " seeds: mean, band min–max)" : "";
  io::write_file_atomic(dir + "/forget_loss.svg",
                        svg_plot(forget_curves, {"Forget-set loss while unlearning" + over, "step",
                                                 "forget NLL (higher = forgotten)"}));
  io::write_file_atomic(dir + "/retain_loss.svg",
                        svg_plot(retain_curves, {"Retain-set loss while unlearning" + over, "step",
                                                 "retain NLL (lower = kept)"}));
  PlotOptions po{
      "Forget quality vs model utility" +
          (seeds > 1 ? " (" + std::to_string(seeds) + " seeds; large dot: median FQ, mean MU)"
                     : std::string()),
      "forget quality (KS p-value, log scale)", "model utility"};
  po.log_x = true;
  po.width = 720;
  io::write_file_atomic(dir + "/forget_quality_vs_utility.svg", svg_plot(pareto, po));
}

}  // namespace lethe::cli
