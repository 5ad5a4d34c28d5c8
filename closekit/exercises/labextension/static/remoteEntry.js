/*
 * closekit-answers: the JupyterLab side of closekit's exercise widgets.
 *
 * A click in an exercise widget ("Run it") is judged by the kernel at once, but nbgrader grades the
 * notebook *document*: it re-executes the cells, so an answer that lives only in the kernel scores 0.
 * On a click the kernel opens a comm on target "closekit.answer" with
 *     {model_id, name, source}   e.g. {model_id: "…", name: "q1", source: 'q1.answer("C")'}
 * and this plugin writes `source` into the question's answer cell (the first code cell below the
 * widget's cell that is an nbgrader solution cell or calls `<name>.answer(`; a new cell below the
 * widget if there is none), saves the notebook, and replies {ok, cell} or {ok: false, reason}.
 *
 * Plain JavaScript, no build step: the file is a module-federation container with the two calls
 * JupyterLab 4 makes of every prebuilt extension (init, get("./extension")), and the plugin needs
 * nothing but the application object (shell, panels, their kernels), so it shares no modules.
 */
var _JUPYTERLAB;
(function () {
  "use strict";

  var NAME = "closekit-answers";
  var TARGET = "closekit.answer";
  var WIDGET_MIME = "application/vnd.jupyter.widget-view+json";

  function outputs(cell) {
    try {
      return cell.model.outputs ? cell.model.outputs.toJSON() : [];
    } catch (e) {
      return [];
    }
  }

  function showsWidget(cell, modelId) {
    return outputs(cell).some(function (o) {
      return o.data && o.data[WIDGET_MIME] && o.data[WIDGET_MIME].model_id === modelId;
    });
  }

  function isAnswerCell(cell, name) {
    if (cell.model.type !== "code") return false;
    var nbgrader = cell.model.getMetadata ? cell.model.getMetadata("nbgrader") : undefined;
    if (nbgrader && nbgrader.solution === true) return true;
    var calls = new RegExp("(^|[^\\w.])" + name.replace(/[^\w]/g, "") + "\\.answer\\(");
    return calls.test(cell.model.sharedModel.getSource());
  }

  async function write(panel, data) {
    var cells = panel.content.widgets;
    var at = cells.findIndex(function (c) {
      return showsWidget(c, data.model_id);
    });
    if (at < 0) return { ok: false, reason: "the question's cell is not in this notebook" };
    var index = -1;
    for (var i = at + 1; i < cells.length; i++) {
      if (isAnswerCell(cells[i], data.name)) {
        index = i;
        break;
      }
    }
    var shared = panel.content.model.sharedModel;
    var inserted = index < 0;
    if (inserted) {
      index = at + 1;
      shared.insertCell(index, { cell_type: "code", source: data.source, metadata: {} });
    } else if (cells[index].model.sharedModel.getSource() !== data.source) {
      cells[index].model.sharedModel.setSource(data.source);
    }
    await panel.context.save();
    return { ok: true, cell: index + 1, inserted: inserted, path: panel.context.path };
  }

  function activate(app) {
    var watched = new WeakSet();
    var kernels = new WeakSet();

    function register(panel) {
      var session = panel.sessionContext.session;
      var kernel = session && session.kernel;
      if (!kernel || kernels.has(kernel)) return;
      kernels.add(kernel);
      kernel.registerCommTarget(TARGET, function (comm, msg) {
        write(panel, msg.content.data || {})
          .catch(function (e) {
            return { ok: false, reason: String((e && e.message) || e) };
          })
          .then(function (reply) {
            comm.send(reply);
            comm.close();
          });
      });
    }

    function watch(panel) {
      if (!panel || watched.has(panel) || !panel.sessionContext || !panel.context) return;
      if (!panel.content || !panel.content.model || !panel.content.widgets) return;
      watched.add(panel);
      panel.sessionContext.kernelChanged.connect(function () {
        register(panel);
      });
      panel.sessionContext.ready.then(function () {
        register(panel);
      });
      register(panel);
    }

    function scan() {
      var it = app.shell.widgets("main");
      var next = it && it.next();
      // Lumino 2 iterators follow the JS protocol ({value, done}); older ones return the value or undefined.
      while (next && !(next.done === true)) {
        watch(next.value !== undefined ? next.value : next);
        next = it.next();
      }
    }

    ["currentChanged", "layoutModified", "activeChanged"].forEach(function (signal) {
      if (app.shell[signal]) app.shell[signal].connect(scan);
    });
    app.restored.then(scan);
    scan();
  }

  var plugin = {
    id: NAME + ":plugin",
    description: "Writes the answer clicked in a closekit exercise into the notebook's answer cell, and saves it.",
    autoStart: true,
    activate: activate,
  };

  (_JUPYTERLAB = typeof _JUPYTERLAB === "undefined" ? {} : _JUPYTERLAB)[NAME] = {
    init: function () {
      return Promise.resolve();
    },
    get: function (module) {
      if (module === "./extension" || module === "./index") {
        return Promise.resolve(function () {
          return { __esModule: true, default: plugin };
        });
      }
      return Promise.reject(new Error(NAME + " has no module " + module));
    },
  };
})();
