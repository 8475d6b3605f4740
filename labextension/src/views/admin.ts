/** Admin: runner tokens. Create (the secret is shown once), list, revoke. */

import { Clipboard, Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { ClusterApi } from '../api';
import { button, h, replaceChildren } from '../components/dom';
import { formatTime, IRunnerToken } from '../models';
import { errorText } from '../roles';

export class AdminView extends Widget {
  constructor(readonly api: ClusterApi) {
    super();
    this.id = 'kohakuriver-admin';
    this.addClass('kr-AdminView');
    this.title.label = 'Cluster admin';
    this._name = h('input', { class: 'jp-mod-styled', id: 'kr-token-name', placeholder: 'token name', 'aria-label': 'Token name' });
    this._node = h('input', { class: 'jp-mod-styled', id: 'kr-token-node', placeholder: 'bind to node (optional)', 'aria-label': 'Node name' });
    this._error = h('div', { class: 'kr-Error', role: 'alert', hidden: true });
    this._created = h('div', { class: 'kr-NewToken', hidden: true, role: 'status' });
    this._tbody = h('tbody');
    replaceChildren(
      this.node,
      h('h2', null, 'Runner tokens'),
      h('p', { class: 'kr-Muted' }, 'A runner dials the host with one of these tokens (kohakuriver-runner --token …). Revoking a token disconnects its runner.'),
      h(
        'form',
        {
          class: 'kr-Toolbar',
          onsubmit: (e: Event) => {
            e.preventDefault();
            void this._create();
          }
        },
        this._name,
        this._node,
        h('button', { type: 'submit', class: 'jp-Button jp-mod-styled jp-mod-accept kr-Button' }, 'Create token')
      ),
      this._error,
      this._created,
      h(
        'table',
        { class: 'kr-Table' },
        h('thead', null, h('tr', null, ['Name', 'Node', 'Created', 'Last used', 'State', ''].map(c => h('th', null, c)))),
        this._tbody
      )
    );
    void this.reload();
  }

  async reload(): Promise<void> {
    try {
      const tokens = await this.api.runnerTokens();
      replaceChildren(
        this._tbody,
        tokens.length ? tokens.map(t => this._row(t)) : h('tr', null, h('td', { colspan: 6, class: 'kr-Muted' }, 'No runner tokens.'))
      );
    } catch (error) {
      this._showError(errorText(error, 'runner tokens'));
    }
  }

  private _row(t: IRunnerToken): HTMLElement {
    return h(
      'tr',
      { 'data-token': t.token_id },
      h('td', null, t.name),
      h('td', null, t.node ?? 'any'),
      h('td', null, formatTime(t.created_at)),
      h('td', null, formatTime(t.last_used_at)),
      h('td', null, t.revoked ? 'revoked' : 'active'),
      h('td', null, t.revoked ? null : button('Revoke', () => void this._revoke(t), { cls: 'kr-mod-danger', title: `Revoke token ${t.name}` }))
    );
  }

  private _showError(message: string): void {
    this._error.hidden = !message;
    this._error.textContent = message;
  }

  private async _create(): Promise<void> {
    const name = this._name.value.trim();
    if (!name) {
      this._showError('name: give the token a name');
      this._name.focus();
      return;
    }
    try {
      const token = await this.api.createRunnerToken(name, this._node.value.trim() || undefined);
      this._showError('');
      this._name.value = '';
      this._node.value = '';
      const secret = token.token ?? '';
      replaceChildren(
        this._created,
        h('strong', null, `Token "${token.name}" created. Copy it now: it is not shown again.`),
        h('code', { class: 'kr-Secret', 'data-kr': 'new-token' }, secret),
        button('Copy', () => Clipboard.copyToSystem(secret), { title: 'Copy the token' }),
        button('Hide', () => {
          this._created.hidden = true;
          this._created.textContent = '';
        }, { title: 'Hide the token' })
      );
      this._created.hidden = false;
      await this.reload();
    } catch (error) {
      this._showError(errorText(error, 'create token'));
    }
  }

  private async _revoke(t: IRunnerToken): Promise<void> {
    const result = await showDialog({
      title: `Revoke runner token "${t.name}"?`,
      body: 'The runner using it is disconnected and cannot reconnect with it.',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Revoke' })]
    });
    if (result.button.accept) {
      try {
        await this.api.revokeRunnerToken(t.token_id);
      } catch (error) {
        this._showError(errorText(error, 'revoke'));
      }
      await this.reload();
    }
  }

  private _name: HTMLInputElement;
  private _node: HTMLInputElement;
  private _error: HTMLElement;
  private _created: HTMLElement;
  private _tbody: HTMLElement;
}
