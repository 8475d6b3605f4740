/**
 * kohakuriver-lab: JupyterLab wiring only. The sidebar, the main-area views, the palette
 * commands, the layout restorer, settings and notifications are connected here; the views,
 * the API client and the models live in their own modules.
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  MainAreaWidget,
  Notification,
  WidgetTracker
} from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { Widget } from '@lumino/widgets';

import { clusterIcon } from './icons';
import { ClusterModel } from './model';
import { taskLabel } from './models';
import { AdminView } from './views/admin';
import { NodesView } from './views/nodes';
import { ClusterSidebar, IPanelActions } from './views/sidebar';
import { ISubmitDefaults, showSubmitDialog } from './views/submit';
import { TaskDetailView } from './views/taskdetail';
import { TasksView } from './views/tasks';

const PLUGIN_ID = 'kohakuriver-lab:plugin';
const CATEGORY = 'KohakuRiver';

export namespace CommandIDs {
  export const openPanel = 'kohakuriver:open-panel';
  export const submit = 'kohakuriver:submit-task';
  export const openTasks = 'kohakuriver:open-tasks';
  export const openNodes = 'kohakuriver:open-nodes';
  export const openTask = 'kohakuriver:open-task';
  export const openAdmin = 'kohakuriver:open-admin';
  export const refresh = 'kohakuriver:refresh';
}

type View = 'tasks' | 'nodes' | 'admin' | 'task';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'KohakuRiver cluster panel: nodes, GPUs, queue, logs, submit.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer, ISettingRegistry],
  activate: async (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    const { commands, shell } = app;
    const defaults: ISubmitDefaults = { cores: 1, memory: '', gpus: 0 };
    const model = new ClusterModel({ refreshInterval: 10 });
    const tracker = new WidgetTracker<MainAreaWidget<Widget>>({ namespace: 'kohakuriver' });
    const views = new Map<string, MainAreaWidget<Widget>>();

    const open = (view: View, id = ''): MainAreaWidget<Widget> => {
      const key = view === 'task' ? `task:${id}` : view;
      let widget = views.get(key);
      if (!widget || widget.isDisposed) {
        const content =
          view === 'tasks'
            ? new TasksView(model, actions)
            : view === 'nodes'
              ? new NodesView(model, actions)
              : view === 'admin'
                ? new AdminView(model.api)
                : new TaskDetailView(model, id, actions);
        widget = new MainAreaWidget({ content });
        widget.id = `kohakuriver-main-${key.replace(':', '-')}`;
        widget.title.icon = clusterIcon;
        widget.title.closable = true;
        widget.title.label = content.title.label;
        content.title.changed.connect(() => {
          widget!.title.label = content.title.label;
          widget!.title.caption = content.title.caption;
        });
        (widget as any).krView = { view, id };
        views.set(key, widget);
        void tracker.add(widget);
        shell.add(widget, 'main');
      }
      shell.activateById(widget.id);
      return widget;
    };

    const actions: IPanelActions = {
      openTask: id => void commands.execute(CommandIDs.openTask, { id }),
      openTasks: () => void commands.execute(CommandIDs.openTasks),
      openNodes: () => void commands.execute(CommandIDs.openNodes),
      openAdmin: () => void commands.execute(CommandIDs.openAdmin),
      submit: () => void commands.execute(CommandIDs.submit),
      openPath: path => void commands.execute('docmanager:open', { path })
    };

    // ----- sidebar -----
    const sidebar = new ClusterSidebar(model, actions);
    sidebar.title.icon = clusterIcon;
    shell.add(sidebar, 'left', { rank: 850 });
    if (restorer) {
      restorer.add(sidebar, 'kohakuriver-panel');
    }

    // ----- notifications for tasks submitted from this browser -----
    model.trackedFinished.connect((_, task) => {
      const text = `Task "${taskLabel(task)}" ${task.status}` + (task.exit_code !== null && task.exit_code !== undefined ? ` (exit ${task.exit_code})` : '');
      const options = {
        autoClose: 8000,
        actions: [{ label: 'Open', callback: () => actions.openTask(task.task_id) }]
      };
      if (task.status === 'completed') {
        Notification.success(text, options);
      } else if (task.status === 'killed' || task.status === 'stopped') {
        Notification.warning(text, options);
      } else {
        Notification.error(text, options);
      }
    });

    // ----- commands -----
    commands.addCommand(CommandIDs.openPanel, {
      label: 'Show the Cluster Panel',
      caption: 'Show the KohakuRiver sidebar',
      icon: clusterIcon,
      execute: () => shell.activateById(sidebar.id)
    });
    commands.addCommand(CommandIDs.submit, {
      label: 'Submit Cluster Task…',
      caption: 'Submit a command to the cluster',
      execute: async () => {
        const ids = await showSubmitDialog(model, defaults);
        if (ids.length) {
          model.track(ids);
          Notification.info(`Submitted ${ids.length > 1 ? `${ids.length} tasks` : `task ${ids[0]}`}`, { autoClose: 3000 });
          return ids;
        }
        return [];
      }
    });
    commands.addCommand(CommandIDs.openTasks, {
      label: 'Open Cluster Tasks',
      caption: 'The queue and history of cluster tasks',
      execute: () => open('tasks')
    });
    commands.addCommand(CommandIDs.openNodes, {
      label: 'Open Cluster Nodes',
      caption: 'Nodes, GPUs and utilization charts',
      execute: () => open('nodes')
    });
    commands.addCommand(CommandIDs.openAdmin, {
      label: 'Open Cluster Admin (Runner Tokens)',
      execute: () => open('admin')
    });
    commands.addCommand(CommandIDs.openTask, {
      label: args => (args.id ? `Open Cluster Task ${args.id}` : 'Open Cluster Task'),
      execute: args => {
        const id = String(args.id ?? '');
        if (!/^\d+$/.test(id)) {
          throw new Error('kohakuriver:open-task needs {"id": "<task id>"}');
        }
        return open('task', id);
      }
    });
    commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh Cluster Panel',
      execute: () => model.refresh()
    });
    commands.addCommand('kohakuriver:restore', {
      label: 'Restore a cluster view',
      execute: args => open(String(args.view) as View, String(args.id ?? ''))
    });
    if (palette) {
      for (const command of [CommandIDs.openPanel, CommandIDs.submit, CommandIDs.openTasks, CommandIDs.openNodes, CommandIDs.openAdmin, CommandIDs.refresh]) {
        palette.addItem({ command, category: CATEGORY });
      }
    }

    // ----- layout restorer -----
    if (restorer) {
      void restorer.restore(tracker, {
        command: 'kohakuriver:restore',
        args: w => ({ ...((w as any).krView ?? {}) }),
        name: w => w.id
      });
    }

    // ----- settings -----
    if (settingRegistry) {
      try {
        const settings = await settingRegistry.load(PLUGIN_ID);
        const apply = () => {
          model.refreshInterval = settings.get('refreshInterval').composite as number;
          defaults.cores = settings.get('defaultCores').composite as number;
          defaults.memory = settings.get('defaultMemory').composite as string;
          defaults.gpus = settings.get('defaultGpus').composite as number;
        };
        apply();
        settings.changed.connect(apply);
      } catch (error) {
        console.warn('kohakuriver-lab: settings not loaded', error);
      }
    }

    // ----- start -----
    try {
      // the cluster's name for this user (Jupyter's own identity may be an anonymous one)
      model.owner = await model.api.me();
    } catch {
      model.owner = '';
    }
    void model.start();
  }
};

export default plugin;
