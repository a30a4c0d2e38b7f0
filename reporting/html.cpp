#include "reporting/html.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "reporting/plots.h"
#include "store/errors.h"
#include "store/hash.h"

namespace tb {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Runs before the runtime, so that whatever goes wrong from the first script on is recorded
// where screenshot-report reads it. A dialog or an image is never part of this page: either
// means a string from the store became markup.
constexpr const char* kCaptureScript = R"js(
(function () {
  var check = window.tbCheck = {charts: [], errors: [], warnings: []};
  function text(args) {
    return Array.prototype.map.call(args, function (a) {
      if (a instanceof Error) return a.message;
      if (typeof a === 'string') return a;
      try { return JSON.stringify(a); } catch (e) { return String(a); }
    }).join(' ');
  }
  var error = console.error, warn = console.warn;
  console.error = function () { check.errors.push(text(arguments)); error.apply(console, arguments); };
  console.warn = function () { check.warnings.push(text(arguments)); warn.apply(console, arguments); };
  window.addEventListener('error', function (e) {
    var what = e.message ? 'uncaught: ' + e.message : 'failed to load: <' + (e.target && e.target.tagName) + '>';
    check.errors.push(what);
  }, true);
  window.addEventListener('unhandledrejection', function (e) {
    check.errors.push('unhandled rejection: ' + text([e.reason]));
  });
  document.addEventListener('securitypolicyviolation', function (e) {
    check.errors.push('blocked by the page policy: ' + e.violatedDirective + ' ' + (e.blockedURI || ''));
  });
  window.alert = window.confirm = window.prompt = function (m) { check.errors.push('dialog opened: ' + m); };
})();
)js";

// Embeds every plot, then writes the check; and sorts a table by the column whose header is
// clicked (numbers by their leading value, "–" and other blanks last, then text).
constexpr const char* kMainScript = R"js(
(function () {
  var check = window.tbCheck;
  var plots = JSON.parse(document.getElementById('tb-plots').textContent);
  var jobs = plots.map(function (p, i) {
    var el = document.querySelector('[data-plot="' + i + '"]');
    if (typeof vegaEmbed !== 'function') {
      check.errors.push(p.name + ': the Vega runtime did not load');
      return Promise.resolve({name: p.name, marks: 0});
    }
    var options = {renderer: 'svg', logLevel: vega.Warn,
                   actions: {export: true, source: false, compiled: false, editor: false}};
    return vegaEmbed(el, p.spec, options)
      .then(function (result) { return result.view.runAsync(); })
      .then(function () { return {name: p.name, marks: el.querySelectorAll('.role-mark > *').length}; },
            function (err) {
              check.errors.push(p.name + ': ' + (err && err.message ? err.message : String(err)));
              return {name: p.name, marks: 0};
            });
  });
  Promise.all(jobs).then(function (charts) {
    check.charts = charts;
    var images = document.images.length;
    if (images > 0) check.errors.push(images + ' image element(s) in the page: markup from the data?');
    check.height = document.documentElement.scrollHeight;
    document.getElementById('tb-check').textContent = JSON.stringify(check);
  });

  function number(cell) {
    var m = /^[-+\u2212]?\d+(\.\d+)?(e[-+]?\d+)?/i.exec(cell.textContent.trim());
    return m ? parseFloat(m[0].replace('\u2212', '-')) : null;
  }
  document.querySelectorAll('table.tb-sortable').forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.querySelector('button').addEventListener('click', function () {
        var ascending = th.getAttribute('aria-sort') !== 'ascending';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows).map(function (r, i) { return {row: r, index: i}; });
        rows.sort(function (a, b) {
          var x = a.row.cells[col], y = b.row.cells[col], nx = number(x), ny = number(y), c;
          if (nx !== null && ny !== null) c = nx - ny;
          else if (nx !== null || ny !== null) return nx === null ? 1 : -1;
          else c = x.textContent.localeCompare(y.textContent, undefined, {numeric: true});
          return (ascending ? c : -c) || a.index - b.index;
        });
        rows.forEach(function (r) { body.appendChild(r.row); });
      });
    });
  });
})();
)js";

constexpr const char* kStyle = R"css(
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1a1a1a;
       margin: 0 auto; max-width: 1400px; padding: 0 24px 48px; }
h1 { font-size: 22px; margin: 24px 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 24px 0 6px; } nav ul { columns: 2; padding-left: 18px; } .meta { color: #555; }
figure { margin: 16px 0 28px; } figcaption { color: #444; max-width: 900px; margin-top: 4px; }
.tb-wrap { overflow-x: auto; } table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 3px 8px; text-align: left; vertical-align: top; }
th.num, td.num { text-align: right; white-space: nowrap; } thead th { background: #f5f5f5; position: sticky; top: 0; }
th button { font: inherit; font-weight: 600; background: none; border: 0; padding: 0; cursor: pointer;
            text-align: inherit; }
th[aria-sort=ascending] button::after { content: " \25B2"; }
th[aria-sort=descending] button::after { content: " \25BC"; }
tbody tr:hover { background: #fafae6; } p.note { color: #444; max-width: 1000px; }
)css";

std::string ReadRuntimeFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw BadInput(fmt::format("{}: the Vega runtime is missing (run scripts/fetch-vega)", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A script's text made safe between <script> and </script>: "</script" would close the element
// and "<!--" can start the parser's escaped states, so both get an escape that means the same
// characters to JavaScript in a string, template or pattern; a source-map comment would point
// at a file the page does not have.
std::string InlineScript(const std::string& js) {
  std::string out;
  out.reserve(js.size());
  std::istringstream lines(js);
  std::string line;
  auto at = [&](size_t i, const char* word) {
    for (size_t k = 0; word[k]; ++k) {
      if (i + k >= line.size() || std::tolower(static_cast<unsigned char>(line[i + k])) != word[k]) return false;
    }
    return true;
  };
  while (std::getline(lines, line)) {
    if (line.rfind("//# sourceMappingURL=", 0) == 0) continue;
    for (size_t i = 0; i < line.size(); ++i) {
      if (at(i, "</script")) {
        out += "<\\/";
        ++i;
      } else if (at(i, "<!--")) {
        out += "\\x3C";
      } else {
        out += line[i];
      }
    }
    out += '\n';
  }
  return out;
}

std::string Base64(const std::string& bytes) {
  static const char* kDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 2]);
    out += kDigits[(v >> 18) & 63];
    out += kDigits[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kDigits[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kDigits[v & 63] : '=';
  }
  return out;
}

// The CSP source of a script: its SHA-256, base64 (only the page's own scripts run, so even a
// string that became markup could not execute).
std::string ScriptHash(const std::string& script) {
  const std::string hex = Sha256Hex(script);
  std::string raw;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) raw += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return "'sha256-" + Base64(raw) + "'";
}

// Splits one Markdown table row into its cells ('\|' is a '|' inside a cell, as MarkdownCell writes it).
std::vector<std::string> MarkdownCells(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  for (size_t i = 1; i < line.size(); ++i) {
    if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
      cell += '|';
      ++i;
    } else if (line[i] == '|') {
      const size_t b = cell.find_first_not_of(' '), e = cell.find_last_not_of(' ');
      cells.push_back(b == std::string::npos ? "" : cell.substr(b, e - b + 1));
      cell.clear();
    } else {
      cell += line[i];
    }
  }
  return cells;
}

bool IsRule(const std::vector<std::string>& cells) {
  for (const auto& c : cells) {
    if (c.empty() || c.find_first_not_of(":-") != std::string::npos) return false;
  }
  return !cells.empty();
}

struct Contents {
  std::string html;
  std::vector<std::pair<std::string, std::string>> toc;  // (anchor, title)
  int tables = 0;
};

// The Markdown report as HTML, table for table: the Markdown the renderers write is the one
// source of every cell, so the page and the .md never disagree. Its subset: "## " headings,
// pipe tables (a rule row whose cells end in ':' right-aligns the column), paragraphs.
void AppendMarkdown(const std::string& md, Contents& out) {
  std::vector<std::string> lines;
  std::istringstream in(md);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::string paragraph;
  auto flush = [&] {
    if (!paragraph.empty()) out.html += "<p class=\"note\">" + HtmlEscape(paragraph) + "</p>\n";
    paragraph.clear();
  };
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (line.rfind("## ", 0) == 0) {
      flush();
      const std::string anchor = fmt::format("table-{}", out.toc.size() + 1);
      out.toc.emplace_back(anchor, line.substr(3));
      out.html += fmt::format("<h3 id=\"{}\">{}</h3>\n", anchor, HtmlEscape(line.substr(3)));
    } else if (line.rfind("|", 0) == 0) {
      flush();
      const std::vector<std::string> header = MarkdownCells(line);
      std::vector<bool> right(header.size(), false);
      size_t j = i + 1;
      if (j < lines.size() && IsRule(MarkdownCells(lines[j]))) {
        const auto rule = MarkdownCells(lines[j]);
        for (size_t c = 0; c < rule.size() && c < right.size(); ++c) right[c] = rule[c].back() == ':';
        ++j;
      }
      auto cls = [&](size_t c) { return c < right.size() && right[c] ? " class=\"num\"" : ""; };
      out.html += "<div class=\"tb-wrap\"><table class=\"tb-sortable\">\n<thead><tr>";
      for (size_t c = 0; c < header.size(); ++c) {
        out.html +=
            fmt::format("<th scope=\"col\"{}><button type=\"button\">{}</button></th>", cls(c), HtmlEscape(header[c]));
      }
      out.html += "</tr></thead>\n<tbody>\n";
      for (; j < lines.size() && lines[j].rfind("|", 0) == 0; ++j) {
        out.html += "<tr>";
        const auto cells = MarkdownCells(lines[j]);
        for (size_t c = 0; c < cells.size(); ++c)
          out.html += fmt::format("<td{}>{}</td>", cls(c), HtmlEscape(cells[c]));
        out.html += "</tr>\n";
      }
      out.html += "</tbody></table></div>\n";
      ++out.tables;
      i = j - 1;
    } else if (line.empty()) {
      flush();
    } else {
      paragraph += (paragraph.empty() ? "" : " ") + line;
    }
  }
  flush();
}

}  // namespace

std::string HtmlEscape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
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
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string ScriptJson(const json& value) {
  const std::string dumped = value.dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
  std::string out;
  out.reserve(dumped.size());
  for (size_t i = 0; i < dumped.size(); ++i) {
    const char c = dumped[i];
    // Outside strings JSON has none of these, so each is a character of a string.
    if (c == '<') {
      out += "\\u003c";
    } else if (c == '>') {
      out += "\\u003e";
    } else if (c == '&') {
      out += "\\u0026";
    } else if (c == '\xE2' && i + 2 < dumped.size() && dumped[i + 1] == '\x80' &&
               (dumped[i + 2] == '\xA8' || dumped[i + 2] == '\xA9')) {
      out += dumped[i + 2] == '\xA8' ? "\\u2028" : "\\u2029";
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

std::string DefaultVegaRuntimeDir() {
  const char* env = std::getenv("TRANSFERBENCH_DATA");
  const fs::path data = env ? fs::path(env) : fs::path(TB_SOURCE_DIR) / "results" / "data";
  return (data / "npm" / "vega-runtime").string();
}

std::string RenderHtmlReport(RunStore& store, const std::string& suite, const SuiteReport& report,
                             const DeclaredOptions& declared, const HtmlOptions& options) {
  const fs::path dir = options.runtime_dir.empty() ? fs::path(DefaultVegaRuntimeDir()) : fs::path(options.runtime_dir);
  std::vector<std::string> scripts = {kCaptureScript};
  for (const char* file : {"vega.min.js", "vega-lite.min.js", "vega-embed.min.js"}) {
    scripts.push_back(InlineScript(ReadRuntimeFile(dir / file)));
  }
  std::string versions;
  if (std::ifstream in(dir / "versions.json"); in) {
    const json v = json::parse(in, nullptr, /*allow_exceptions=*/false);
    for (const char* name : {"vega", "vega-lite", "vega-embed"}) {
      if (v.is_object() && v.contains(name) && v[name].is_string()) {
        versions += (versions.empty() ? "" : ", ") + std::string(name) + " " + v[name].get<std::string>();
      }
    }
  }
  scripts.push_back(kMainScript);

  Contents tables;
  for (const std::string& section : SuiteMarkdownSections(report)) AppendMarkdown(section, tables);
  const std::vector<Plot> plots = BuildPlots({store, suite, declared, report});

  std::set<std::string> suites;
  const std::vector<RunRecord> runs = ReportRuns(store, suite);
  for (const auto& r : runs) suites.insert(r.suite);
  std::string suite_list;
  for (const auto& s : suites) suite_list += (suite_list.empty() ? "" : ", ") + s;

  const std::string title = suite.empty() ? "TransferBench — every suite" : "TransferBench — suite " + suite;
  std::string csp = "default-src 'none'; script-src 'unsafe-eval'";  // Vega compiles its expressions
  for (const auto& s : scripts) csp += " " + ScriptHash(s);
  csp += "; style-src 'unsafe-inline'; img-src data: blob:";

  std::string page = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  page += fmt::format("<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\n", HtmlEscape(csp));
  page += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  page += fmt::format("<title>{}</title>\n<style>{}</style>\n", HtmlEscape(title), kStyle);
  page += "<script>" + scripts[0] + "</script>\n";
  page += fmt::format("<!-- Vega runtime ({}), BSD-3-Clause: https://github.com/vega -->\n",
                      HtmlEscape(versions.empty() ? "versions not recorded" : versions));
  for (size_t i = 1; i + 1 < scripts.size(); ++i) page += "<script>" + scripts[i] + "</script>\n";
  page += "</head>\n<body>\n<header>\n";
  page += fmt::format(
      "<h1>{}</h1>\n<p class=\"meta\">{} finished runs{}. Tables as in the Markdown report (click a "
      "header to sort); plots drawn by Vega-Lite ({}), everything inline: no network needed.</p>\n",
      HtmlEscape(title), runs.size(),
      suite_list.empty() ? ""
                         : " from " + std::string(suites.size() > 1 ? "suites " : "suite ") + HtmlEscape(suite_list),
      HtmlEscape(versions));
  page += "<nav><ul>\n";
  if (!plots.empty()) page += "<li><a href=\"#plots\">Plots</a></li>\n";
  for (const auto& [anchor, heading] : tables.toc)
    page += fmt::format("<li><a href=\"#{}\">{}</a></li>\n", anchor, HtmlEscape(heading));
  page += "</ul></nav>\n</header>\n<main>\n";
  json specs = json::array();
  if (!plots.empty()) {
    page += "<section id=\"plots\">\n<h2>Plots</h2>\n";
    for (size_t i = 0; i < plots.size(); ++i) {
      page += fmt::format(
          "<figure id=\"plot-{0}\"><div class=\"tb-chart\" data-plot=\"{0}\"></div><figcaption><b>{1}</b>. "
          "{2}</figcaption></figure>\n",
          i, HtmlEscape(plots[i].title), HtmlEscape(plots[i].caption));
      specs.push_back({{"name", plots[i].name}, {"spec", plots[i].spec}});
    }
    page += "</section>\n";
  }
  page += "<section id=\"tables\">\n<h2>Tables</h2>\n" + tables.html + "</section>\n</main>\n";
  page += "<pre id=\"tb-check\" hidden></pre>\n";
  page += "<script type=\"application/json\" id=\"tb-plots\">" + ScriptJson(specs) + "</script>\n";
  page += "<script>" + scripts.back() + "</script>\n</body>\n</html>\n";
  return page;
}

std::string WriteHtmlReport(RunStore& store, const std::string& suite, const std::string& dir, const std::string& name,
                            const DeclaredOptions& declared, const HtmlOptions& options) {
  if (name.empty() || name.find('/') != std::string::npos || name.front() == '.') {
    throw BadInput(fmt::format("report name '{}': expected a plain file name", name));
  }
  const SuiteReport report = BuildSuiteReport(store, suite, declared);
  const std::string page = RenderHtmlReport(store, suite, report, declared, options);
  fs::create_directories(dir);
  const std::string path = (fs::path(dir) / (name + ".html")).string();
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw BadInput(fmt::format("{}: cannot write report", tmp));
    f << page;
  }
  fs::rename(tmp, path);
  return path;
}

}  // namespace tb
