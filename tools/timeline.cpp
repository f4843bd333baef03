// Timeline SVG. Plain string building: the picture is a few rectangles and
// lines, not worth a dependency.
#include "timeline.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

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

}  // namespace

std::string timeline_svg(const RunReport& r, double safety, const std::string& title) {
  const double W = 960, H = 400, left = 70, right = 20, top = 50, bottom = 60;
  const double pw = W - left - right, ph = H - top - bottom;
  const std::size_t n = r.submissions.size();

  double ymax = r.budget_ms;
  for (const auto& s : r.submissions) ymax = std::max({ymax, s.measured_ms, s.predicted_ms});
  if (!(ymax > 0)) ymax = 1;
  const double step = nice_step(ymax * 1.1, 6);
  ymax = std::ceil(ymax * 1.1 / step) * step;
  const auto y = [&](double ms) { return top + ph * (1 - ms / ymax); };
  const double slot = n ? pw / static_cast<double>(n) : pw;
  const double bar = std::max(1.0, slot * 0.8);

  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << W / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">"
    << escape(title) << "</text>\n"
    << "<text x=\"" << W / 2 << "\" y=\"40\" text-anchor=\"middle\" fill=\"#555\">" << n
    << " submissions, " << r.budget_misses << " over budget, measured " << fmt(r.total_ms)
    << " ms in total</text>\n";

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
  for (std::size_t i = 0; i < n; ++i) {
    const auto& s = r.submissions[i];
    const double x = left + slot * static_cast<double>(i) + (slot - bar) / 2;
    const char* color = s.over_budget ? "#d62728" : "#2ca02c";
    o << "<rect x=\"" << x << "\" y=\"" << y(s.measured_ms) << "\" width=\"" << bar
      << "\" height=\"" << y(0) - y(s.measured_ms) << "\" fill=\"" << color << "\"><title>#" << i
      << ": measured " << fmt(s.measured_ms, 2) << " ms, predicted " << fmt(s.predicted_ms, 2)
      << " ms, " << s.dispatches << " dispatches</title></rect>\n";
    o << "<line x1=\"" << x << "\" x2=\"" << x + bar << "\" y1=\"" << y(s.predicted_ms)
      << "\" y2=\"" << y(s.predicted_ms) << "\" stroke=\"#333\" stroke-width=\"2\"/>\n";
  }

  // X axis labels: about 10, at round indices.
  const std::size_t every =
      std::max<std::size_t>(1, static_cast<std::size_t>(nice_step(static_cast<double>(n), 10)));
  for (std::size_t i = 0; i < n; i += every)
    o << "<text x=\"" << left + slot * (static_cast<double>(i) + 0.5) << "\" y=\"" << y(0) + 16
      << "\" text-anchor=\"middle\">" << i << "</text>\n";
  o << "<text x=\"" << left + pw / 2 << "\" y=\"" << H - 18
    << "\" text-anchor=\"middle\">submission (bars: measured, dark ticks: predicted)</text>\n";
  o << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << y(0) << "\" y2=\"" << y(0)
    << "\" stroke=\"black\"/>\n"
    << "<line x1=\"" << left << "\" x2=\"" << left << "\" y1=\"" << top << "\" y2=\"" << y(0)
    << "\" stroke=\"black\"/>\n";

  // Budget lines last, so they are on top of the bars.
  if (r.budget_ms > 0) {
    o << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << y(r.budget_ms)
      << "\" y2=\"" << y(r.budget_ms) << "\" stroke=\"#d62728\" stroke-width=\"2\"/>\n"
      << "<text x=\"" << left + pw - 4 << "\" y=\"" << y(r.budget_ms) - 5
      << "\" text-anchor=\"end\" fill=\"#d62728\" stroke=\"white\" stroke-width=\"3\" "
         "paint-order=\"stroke\">budget "
      << fmt(r.budget_ms) << " ms</text>\n";
    if (safety > 0 && safety < 1) {
      const double t = r.budget_ms * safety;
      o << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << y(t) << "\" y2=\""
        << y(t) << "\" stroke=\"#ff7f0e\" stroke-dasharray=\"6,4\"/>\n"
        << "<text x=\"" << left + 4 << "\" y=\"" << y(t) - 5
        << "\" fill=\"#ff7f0e\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\">planned "
        << fmt(t) << " ms (x" << fmt(safety, 2) << ")</text>\n";
    }
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace longattn::cli
