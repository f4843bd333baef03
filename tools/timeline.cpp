// Timeline SVG. Plain string building: the picture is a few rectangles and
// lines, not worth a dependency.
#include "timeline.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <vector>

namespace longattn::cli {
namespace {

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string fmt(double x, int prec = 1) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, x);
  return buf;
}

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about n ticks.
double nice_step(double range, int n) {
  const double raw = range / n;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= raw) return m * p;
  return 10 * p;
}

// Consecutive submissions drawn as one bar: when there are more submissions
// than the plot has room for at kMinSlot pixels each, a bar stands for the
// slowest of its bin (the budget question is "did any go over?"), and is red
// when any of them went over.
struct Bin {
  std::size_t first = 0, count = 0;
  double measured = 0, predicted = 0;
  int over = 0;
};

constexpr double kMinSlot = 3;  // pixels per bar: 2 of bar, 1 of gap at least

std::vector<Bin> bin_submissions(const RunReport& r, double plot_width) {
  const std::size_t n = r.submissions.size();
  const auto max_bars = static_cast<std::size_t>(plot_width / kMinSlot);
  const std::size_t per = n <= max_bars ? 1 : (n + max_bars - 1) / max_bars;
  std::vector<Bin> bins;
  for (std::size_t i = 0; i < n; i += per) {
    Bin b{.first = i, .count = std::min(per, n - i)};
    for (std::size_t j = i; j < i + b.count; ++j) {
      const auto& s = r.submissions[j];
      b.measured = std::max(b.measured, s.measured_ms);
      b.predicted = std::max(b.predicted, s.predicted_ms);
      b.over += s.over_budget ? 1 : 0;
    }
    bins.push_back(b);
  }
  return bins;
}

std::string plural(std::size_t n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

}  // namespace

// Layout, top to bottom: title, a summary line, a legend line (the budget
// and planned values are named there, not on the plot, where they would sit
// on the bars), then the plot with its axes.
std::string timeline_svg(const RunReport& r, double safety, const std::string& title) {
  const double W = 960, H = 420, left = 70, right = 20, top = 80, bottom = 60;
  const double pw = W - left - right, ph = H - top - bottom;
  const std::size_t n = r.submissions.size();
  const bool budget = r.budget_ms > 0;
  const bool planned = budget && safety > 0 && safety < 1;
  const std::vector<Bin> bins = bin_submissions(r, pw);
  const std::size_t per = bins.empty() ? 1 : bins.front().count;

  double ymax = budget ? r.budget_ms : 0;
  for (const auto& b : bins) ymax = std::max({ymax, b.measured, b.predicted});
  if (!(ymax > 0)) ymax = 1;
  const double step = nice_step(ymax * 1.1, 6);
  ymax = std::ceil(ymax * 1.1 / step) * step;
  const auto y = [&](double ms) { return top + ph * (1 - ms / ymax); };
  const double slot = bins.empty() ? pw : pw / static_cast<double>(bins.size());
  const double bar = std::max(1.0, std::min(slot - 1, slot * 0.8));

  std::string summary = plural(n, "submission");
  if (budget) summary += ", " + std::to_string(r.budget_misses) + " over budget";
  summary += ", measured " + fmt(r.total_ms) + " ms in total";
  if (per > 1) summary += "; each bar is the slowest of " + std::to_string(per);

  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << W / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">"
    << escape(title) << "</text>\n"
    << "<text x=\"" << W / 2 << "\" y=\"40\" text-anchor=\"middle\" fill=\"#555\">" << summary
    << "</text>\n";

  // Legend: a swatch and a label per series, left to right.
  double lx = left;
  const double ly = 62;
  const auto legend = [&](const std::string& swatch, const std::string& label) {
    o << swatch << "<text class=\"legend\" x=\"" << lx + 22 << "\" y=\"" << ly + 4 << "\">"
      << escape(label) << "</text>\n";
    lx += 22 + 7.0 * static_cast<double>(label.size()) + 18;
  };
  const auto line_swatch = [&](const char* color, const char* extra) {
    std::ostringstream sw;
    sw << "<line x1=\"" << lx << "\" x2=\"" << lx + 16 << "\" y1=\"" << ly << "\" y2=\"" << ly
       << "\" stroke=\"" << color << "\" stroke-width=\"2\"" << extra << "/>";
    return sw.str();
  };
  const auto box_swatch = [&](const char* color) {
    std::ostringstream sw;
    sw << "<rect x=\"" << lx << "\" y=\"" << ly - 5 << "\" width=\"16\" height=\"10\" fill=\""
       << color << "\"/>";
    return sw.str();
  };
  legend(box_swatch("#2ca02c"), budget ? "measured, within budget" : "measured");
  if (budget) legend(box_swatch("#d62728"), "measured, over budget");
  legend(line_swatch("#333", ""), "predicted");
  if (budget) legend(line_swatch("#d62728", ""), "budget " + fmt(r.budget_ms) + " ms");
  if (planned)
    legend(line_swatch("#ff7f0e", " stroke-dasharray=\"6,4\""),
           "planned " + fmt(r.budget_ms * safety) + " ms (x" + fmt(safety, 2) + ")");

  o << "<rect class=\"plot-area\" x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw
    << "\" height=\"" << ph << "\" fill=\"none\"/>\n";
  // Y axis with ticks and grid.
  for (double t = 0; t <= ymax + step / 2; t += step) {
    o << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << y(t) << "\" y2=\""
      << y(t) << "\" stroke=\"#eee\"/>\n"
      << "<text x=\"" << left - 6 << "\" y=\"" << y(t) + 4 << "\" text-anchor=\"end\">"
      << fmt(t, step < 1 ? 2 : 0) << "</text>\n";
  }
  o << "<text transform=\"translate(18," << top + ph / 2
    << ") rotate(-90)\" text-anchor=\"middle\">submission time (ms)</text>\n";

  // Bars (measured) and ticks (predicted).
  for (std::size_t i = 0; i < bins.size(); ++i) {
    const Bin& b = bins[i];
    const double x = left + slot * static_cast<double>(i) + (slot - bar) / 2;
    const char* color = b.over ? "#d62728" : "#2ca02c";
    o << "<rect class=\"bar\" x=\"" << x << "\" y=\"" << y(b.measured) << "\" width=\"" << bar
      << "\" height=\"" << y(0) - y(b.measured) << "\" fill=\"" << color << "\"><title>";
    if (b.count == 1)
      o << "#" << b.first << ": measured " << fmt(b.measured, 2) << " ms, predicted "
        << fmt(b.predicted, 2) << " ms, " << r.submissions[b.first].dispatches
        << (r.submissions[b.first].dispatches == 1 ? " dispatch" : " dispatches");
    else
      o << "#" << b.first << "-" << b.first + b.count - 1 << ": slowest measured "
        << fmt(b.measured, 2) << " ms, predicted up to " << fmt(b.predicted, 2) << " ms"
        << (budget ? ", " + std::to_string(b.over) + " over budget" : "");
    o << "</title></rect>\n";
    o << "<line x1=\"" << x << "\" x2=\"" << x + bar << "\" y1=\"" << y(b.predicted) << "\" y2=\""
      << y(b.predicted) << "\" stroke=\"#333\" stroke-width=\"2\"/>\n";
  }

  // X axis labels: about 10, at round submission indices.
  const std::size_t every = std::max<std::size_t>(
      per,
      static_cast<std::size_t>(nice_step(static_cast<double>(std::max<std::size_t>(n, 1)), 10)));
  for (std::size_t i = 0; i < n; i += every)
    o << "<text x=\"" << left + slot * (static_cast<double>(i / per) + 0.5) << "\" y=\""
      << y(0) + 16 << "\" text-anchor=\"middle\">" << i << "</text>\n";
  o << "<text x=\"" << left + pw / 2 << "\" y=\"" << H - 18
    << "\" text-anchor=\"middle\">submission (bars: measured, dark ticks: predicted)</text>\n";
  o << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << y(0) << "\" y2=\"" << y(0)
    << "\" stroke=\"black\"/>\n"
    << "<line x1=\"" << left << "\" x2=\"" << left << "\" y1=\"" << top << "\" y2=\"" << y(0)
    << "\" stroke=\"black\"/>\n";

  // Budget lines last, so they are on top of the bars; their labels are in
  // the legend.
  if (budget)
    o << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << y(r.budget_ms)
      << "\" y2=\"" << y(r.budget_ms) << "\" stroke=\"#d62728\" stroke-width=\"2\"/>\n";
  if (planned) {
    const double t = r.budget_ms * safety;
    o << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << y(t) << "\" y2=\""
      << y(t) << "\" stroke=\"#ff7f0e\" stroke-dasharray=\"6,4\"/>\n";
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace longattn::cli
