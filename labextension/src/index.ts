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
import { AccessView } from './views/access';
import { AdminView } from './views/admin';
import { EnvironmentsView } from './views/environments';
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
  export const openAccess = 'kohakuriver:open-access';
  export const openEnvironments = 'kohakuriver:open-environments';
  export const openApprovals = 'kohakuriver:open-approvals';
  export const refresh = 'kohakuriver:refresh';
}

type View = 'tasks' | 'nodes' | 'admin' | 'access' | 'environments' | 'task';

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

    const makeView = (view: View, id: string): Widget => {
      switch (view) {
        case 'tasks':
          return new TasksView(model, actions);
        case 'nodes':
          return new NodesView(model, actions);
        case 'admin':
          return new AdminView(model.api);
        case 'access':
          return new AccessView(model);
        case 'environments':
          return new EnvironmentsView(model);
        default:
          return new TaskDetailView(model, id, actions);
      }
    };

    const open = (view: View, id = ''): MainAreaWidget<Widget> => {
      const key = view === 'task' ? `task:${id}` : view;
      let widget = views.get(key);
      if (!widget || widget.isDisposed) {
        const content = makeView(view, id);
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
      openAccess: () => void commands.execute(CommandIDs.openAccess),
      openEnvironments: () => void commands.execute(CommandIDs.openEnvironments),
      openApprovals: () => void commands.execute(CommandIDs.openApprovals),
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
    const refused = (what: string): void => {
      const me = model.me;
      Notification.warning(me ? `${what}: not allowed for the ${me.role} role` : `${what}: ${model.meError || 'the cluster has not said who you are yet'}`, { autoClose: 5000 });
    };
    commands.addCommand(CommandIDs.submit, {
      label: 'Submit Cluster Task…',
      caption: 'Submit a command to the cluster',
      isEnabled: () => model.caps.submit,
      execute: async () => {
        if (!model.caps.submit) {
          refused('Submitting tasks');
          return [];
        }
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
      isEnabled: () => model.caps.runnerTokens,
      execute: () => open('admin')
    });
    commands.addCommand(CommandIDs.openAccess, {
      label: 'Open Cluster Access (API Tokens, Users, Quotas, Audit)',
      caption: 'Your API tokens; for operators and admins users, quotas, settings and the audit log',
      execute: () => open('access')
    });
    commands.addCommand(CommandIDs.openEnvironments, {
      label: 'Open Cluster Environments',
      caption: 'Container environments: create, exec, commit (operators and admins)',
      isEnabled: () => model.caps.environments,
      execute: () => open('environments')
    });
    commands.addCommand(CommandIDs.openApprovals, {
      label: 'Open Tasks Awaiting Approval',
      isEnabled: () => model.caps.approve,
      execute: () => {
        const widget = open('tasks');
        (widget.content as TasksView).setStatusFilter('pending_approval');
        return widget;
      }
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
      for (const command of [
        CommandIDs.openPanel,
        CommandIDs.submit,
        CommandIDs.openTasks,
        CommandIDs.openNodes,
        CommandIDs.openApprovals,
        CommandIDs.openEnvironments,
        CommandIDs.openAccess,
        CommandIDs.openAdmin,
        CommandIDs.refresh
      ]) {
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
    // Who this user is to the cluster (Jupyter's own identity may be an anonymous one): the
    // owner name of their tasks, and the role the views and commands follow.
    model.meChanged.connect(() => commands.notifyCommandChanged());
    await model.loadMe();
    void model.start();
  }
};

export default plugin;
