/** Approve and reject (operators and admins), shared by the Tasks view's queue and the task detail. */

import { Dialog, InputDialog, showDialog } from '@jupyterlab/apputils';

import { ClusterModel } from '../model';
import { ITaskInfo, taskLabel } from '../models';
import { errorText } from '../roles';

/** Approve a waiting task; its new state, or null (the error was shown). */
export async function approveTask(model: ClusterModel, task: ITaskInfo): Promise<ITaskInfo | null> {
  try {
    return await model.act(task.task_id, () => model.api.action(task.task_id, 'approve'));
  } catch (error) {
    void showDialog({ title: `Cannot approve task ${task.task_id}`, body: errorText(error), buttons: [Dialog.okButton()] });
    return null;
  }
}

/** Ask for a reason, then reject; the new state, or null (cancelled, or the error was shown). */
export async function rejectTask(model: ClusterModel, task: ITaskInfo): Promise<ITaskInfo | null> {
  const answer = await InputDialog.getText({
    title: `Reject "${taskLabel(task)}" of ${task.owner}?`,
    label: 'Reason (the owner sees it)',
    placeholder: 'e.g. asks for all 8 GPUs during the course',
    okLabel: 'Reject',
    required: true
  });
  if (!answer.button.accept) {
    return null;
  }
  const reason = (answer.value ?? '').trim();
  if (!reason) {
    void showDialog({ title: 'Not rejected', body: 'A reason is required.', buttons: [Dialog.okButton()] });
    return null;
  }
  try {
    return await model.act(task.task_id, () => model.api.reject(task.task_id, reason));
  } catch (error) {
    void showDialog({ title: `Cannot reject task ${task.task_id}`, body: errorText(error), buttons: [Dialog.okButton()] });
    return null;
  }
}
