/**
 * Access: who you are, your API tokens (the secret shown once), and for operators and
 * admins the cluster's users, quotas, the "approvals required" setting and the audit log.
 * Each section loads on its own and shows its own error; sections the role cannot use are
 * not shown at all (the host refuses them anyway).
 */

import { Clipboard, Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { button, h, replaceChildren } from '../components/dom';
import { ClusterModel } from '../model';
import { formatTime, IApiToken, IAuditEvent, IQuota, IUserInfo, Role, ROLES, Scope, SCOPES } from '../models';
import {
  buildQuota,
  CursorPager,
  errorText,
  formatDetail,
  formatLimit,
  formatScopes,
  IQuotaForm,
  parseGroups,
  QUOTA_LIMITS,
  splitSubject,
  tokenScopes,
  tokenState,
  validUsername
} from '../roles';

const AUDIT_PAGE = 50;
const EXPIRY: [string, string][] = [
  ['7', '7 days'],
  ['30', '30 days'],
  ['90', '90 days'],
  ['365', '1 year'],
  ['', 'never']
];
const SCOPE_HELP: Record<Scope, string> = {
  read: 'read: look only (GET)',
  submit: 'submit: also submit and control your tasks',
  admin: 'admin: everything your role allows'
};

/** A titled section with its own error line. */
function section(name: string, title: string, ...body: (Node | null)[]): { el: HTMLElement; error: HTMLElement } {
  const error = h('div', { class: 'kr-Error', role: 'alert', hidden: true });
  const id = `kr-access-${name}-title`;
  const el = h('section', { class: 'kr-AccessSection', 'data-section': name, 'aria-labelledby': id }, h('h3', { id }, title), ...body, error);
  return { el, error };
}

function showError(el: HTMLElement, message: string): void {
  el.hidden = !message;
  el.textContent = message;
}

export class AccessView extends Widget {
  constructor(readonly model: ClusterModel) {
    super();
    this.id = 'kohakuriver-access';
    this.addClass('kr-AccessView');
    this.title.label = 'Cluster access';
    this._whoami = h('p', { class: 'kr-Whoami', 'data-kr': 'whoami' });
    this._body = h('div', { class: 'kr-AccessBody' });
    replaceChildren(this.node, h('h2', null, 'Access'), this._whoami, this._body);
    model.meChanged.connect(() => this._build(), this);
    this._build();
  }

  /** Re-read every section. */
  async reload(): Promise<void> {
    await Promise.all(this._loaders.map(load => load()));
  }

  // ===== layout by role =====

  private _build(): void {
    const me = this.model.me;
    const caps = this.model.caps;
    if (!me) {
      replaceChildren(this._whoami, this.model.meError || 'Asking the cluster who you are…');
      replaceChildren(this._body);
      return;
    }
    replaceChildren(
      this._whoami,
      'Signed in as ',
      h('strong', null, me.username),
      ` · role ${me.role}`,
      me.groups.length ? ` · groups ${me.groups.join(', ')}` : '',
      me.via === 'api-token' ? ` · API token (${formatScopes(me.scopes)})` : ''
    );
    this._loaders = [];
    const parts: HTMLElement[] = [];
    if (caps.tokens) {
      parts.push(this._tokensSection());
    }
    if (caps.viewUsers) {
      parts.push(this._settingsSection(), this._usersSection(), this._quotasSection());
    }
    if (caps.audit) {
      parts.push(this._auditSection());
    }
    if (!parts.length) {
      parts.push(h('p', { class: 'kr-Muted' }, 'Your role and token give no access settings to manage here.'));
    }
    replaceChildren(this._body, parts);
    void this.reload();
  }

  // ===== API tokens =====

  private _tokensSection(): HTMLElement {
    const name = h('input', { class: 'jp-mod-styled', id: 'kr-apitoken-name', placeholder: 'token name', 'aria-label': 'API token name', maxlength: 100 });
    const expiry = h(
      'select',
      { class: 'jp-mod-styled', id: 'kr-apitoken-expiry', 'aria-label': 'Expires after' },
      EXPIRY.map(([value, label]) => h('option', { value, selected: value === '90' }, label))
    );
    const scopes = SCOPES.map(s => h('input', { type: 'checkbox', value: s, id: `kr-apitoken-scope-${s}` }));
    const created = h('div', { class: 'kr-NewToken', role: 'status', hidden: true });
    const tbody = h('tbody');
    const { el, error } = section(
      'tokens',
      'API tokens',
      h('p', { class: 'kr-Muted' }, 'For scripts and the Python client: send it as "Authorization: Bearer kra_…". A token may do what your role allows, narrowed to its scopes (none ticked: everything).'),
      h(
        'form',
        {
          class: 'kr-Toolbar',
          'aria-label': 'Create an API token',
          onsubmit: (e: Event) => {
            e.preventDefault();
            void create();
          }
        },
        name,
        h(
          'fieldset',
          { class: 'kr-Scopes' },
          h('legend', null, 'Scopes'),
          scopes.map((box, i) => h('label', { class: 'kr-Toggle', for: box.id, title: SCOPE_HELP[SCOPES[i]] }, box, SCOPES[i]))
        ),
        h('label', { class: 'kr-Toggle', for: expiry.id }, 'expires', expiry),
        h('button', { type: 'submit', class: 'jp-Button jp-mod-styled jp-mod-accept kr-Button' }, 'Create token')
      ),
      created,
      h(
        'table',
        { class: 'kr-Table', 'aria-label': 'Your API tokens' },
        h('thead', null, h('tr', null, ['Name', 'Scopes', 'Created', 'Expires', 'Last used', 'State', ''].map(c => h('th', null, c)))),
        tbody
      )
    );
    const load = async () => {
      try {
        const tokens = await this.model.api.apiTokens();
        showError(error, '');
        replaceChildren(
          tbody,
          tokens.length ? tokens.map(t => row(t)) : h('tr', null, h('td', { colspan: 7, class: 'kr-Muted' }, 'No API tokens.'))
        );
      } catch (e) {
        showError(error, errorText(e, 'API tokens'));
      }
    };
    const row = (t: IApiToken): HTMLElement => {
      const state = tokenState(t);
      return h(
        'tr',
        { 'data-token': t.token_id },
        h('td', null, t.name),
        h('td', null, formatScopes(t.scopes)),
        h('td', null, formatTime(t.created_at)),
        h('td', null, t.expires_at ? formatTime(t.expires_at) : 'never'),
        h('td', null, formatTime(t.last_used_at)),
        h('td', null, state),
        h('td', null, state === 'active' ? button('Revoke', () => void revoke(t), { cls: 'kr-mod-danger', title: `Revoke API token ${t.name}` }) : null)
      );
    };
    const create = async () => {
      const tokenName = name.value.trim();
      if (!tokenName) {
        showError(error, 'name: give the token a name');
        name.focus();
        return;
      }
      try {
        const picked = tokenScopes(scopes.filter(b => b.checked).map(b => b.value as Scope));
        const token = await this.model.api.createApiToken({
          name: tokenName,
          ...(picked ? { scopes: picked } : {}),
          expires_in_days: expiry.value ? Number(expiry.value) : null
        });
        showError(error, '');
        name.value = '';
        for (const b of scopes) {
          b.checked = false;
        }
        const secret = token.token ?? '';
        const hide = button('Hide', () => {
          created.hidden = true;
          created.textContent = '';
          name.focus();
        }, { title: 'Hide the token' });
        replaceChildren(
          created,
          h('strong', null, `Token "${token.name}" created. Copy it now: it is not shown again.`),
          h('span', { class: 'kr-Warn' }, 'Anyone holding it acts as you on the cluster: keep it secret, revoke it when unsure.'),
          h('code', { class: 'kr-Secret', 'data-kr': 'new-api-token', tabindex: 0, 'aria-label': 'The new API token' }, secret),
          button('Copy', () => Clipboard.copyToSystem(secret), { title: 'Copy the token' }),
          hide
        );
        created.hidden = false;
        (created.querySelector('.kr-Secret') as HTMLElement).focus();
        await load();
      } catch (e) {
        showError(error, errorText(e, 'create token'));
      }
    };
    const revoke = async (t: IApiToken) => {
      const result = await showDialog({
        title: `Revoke API token "${t.name}"?`,
        body: 'Scripts using it stop working at once.',
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Revoke' })]
      });
      if (result.button.accept) {
        try {
          await this.model.api.revokeApiToken(t.token_id);
        } catch (e) {
          showError(error, errorText(e, 'revoke'));
        }
        await load();
      }
    };
    this._loaders.push(load);
    return el;
  }

  // ===== settings =====

  private _settingsSection(): HTMLElement {
    const admin = this.model.caps.admin;
    const box = h('input', { type: 'checkbox', id: 'kr-setting-approvals', disabled: true });
    const note = h('span', { class: 'kr-Muted', role: 'status' });
    const { el, error } = section(
      'settings',
      'Settings',
      h(
        'div',
        { class: 'kr-Toolbar' },
        h('label', { class: 'kr-Toggle', for: box.id }, box, h('strong', null, 'Approvals required')),
        note
      ),
      h('p', { class: 'kr-Muted' }, "When on, tasks of members with the 'user' role wait in pending_approval until an operator or admin approves them.")
    );
    box.onchange = async () => {
      const wanted = box.checked;
      box.disabled = true;
      try {
        const s = await this.model.api.updateSettings({ approvals_required: wanted });
        box.checked = s.approvals_required;
        note.textContent = s.approvals_required ? 'on' : 'off';
        showError(error, '');
      } catch (e) {
        box.checked = !wanted;
        showError(error, errorText(e, 'settings'));
      } finally {
        box.disabled = !admin;
      }
    };
    this._loaders.push(async () => {
      try {
        const s = await this.model.api.settingsOf();
        box.checked = s.approvals_required;
        box.disabled = !admin;
        note.textContent = (s.approvals_required ? 'on' : 'off') + (admin ? '' : ' (admins change it)');
        showError(error, '');
      } catch (e) {
        showError(error, errorText(e, 'settings'));
      }
    });
    return el;
  }

  // ===== users =====

  private _usersSection(): HTMLElement {
    const admin = this.model.caps.admin;
    const tbody = h('tbody');
    const name = h('input', { class: 'jp-mod-styled', id: 'kr-user-name', placeholder: 'user name', 'aria-label': 'New user name' });
    const role = h('select', { class: 'jp-mod-styled', id: 'kr-user-role', 'aria-label': 'New user role' }, ROLES.map(r => h('option', { value: r, selected: r === 'user' }, r)));
    const groups = h('input', { class: 'jp-mod-styled', id: 'kr-user-groups', placeholder: 'groups (comma separated)', 'aria-label': 'New user groups' });
    const { el, error } = section(
      'users',
      'Users',
      admin
        ? h(
            'form',
            {
              class: 'kr-Toolbar',
              'aria-label': 'Add a user',
              onsubmit: (e: Event) => {
                e.preventDefault();
                void add();
              }
            },
            name,
            role,
            groups,
            h('button', { type: 'submit', class: 'jp-Button jp-mod-styled jp-mod-accept kr-Button' }, 'Add user')
          )
        : h('p', { class: 'kr-Muted' }, 'Admins change roles, groups and accounts.'),
      h(
        'table',
        { class: 'kr-Table', 'aria-label': 'Cluster users' },
        h('thead', null, h('tr', null, ['User', 'Role', 'Groups', 'Active', 'Last seen', 'Added by', ''].map(c => h('th', null, c)))),
        tbody
      )
    );
    const load = async () => {
      try {
        const users = await this.model.api.users();
        showError(error, '');
        replaceChildren(tbody, users.map(u => row(u)));
      } catch (e) {
        showError(error, errorText(e, 'users'));
      }
    };
    const row = (u: IUserInfo): HTMLElement => {
      const who = u.username;
      const roleSel = h(
        'select',
        { class: 'jp-mod-styled', 'aria-label': `Role of ${who}`, disabled: !admin, 'data-field': 'role' },
        ROLES.map(r => h('option', { value: r, selected: r === u.role }, r))
      );
      const groupsIn = h('input', {
        class: 'jp-mod-styled',
        'aria-label': `Groups of ${who}`,
        value: u.groups.join(', '),
        disabled: !admin,
        'data-field': 'groups'
      });
      const active = h('input', { type: 'checkbox', 'aria-label': `${who} is active`, checked: u.active, disabled: !admin, 'data-field': 'active' });
      const save = button('Save', () => void update(), { title: `Save changes to ${who}`, disabled: true });
      const dirty = () => {
        save.disabled = roleSel.value === u.role && groupsIn.value === u.groups.join(', ') && active.checked === u.active;
      };
      roleSel.onchange = dirty;
      groupsIn.oninput = () => {
        if (groupsIn.hasAttribute('aria-invalid')) {
          groupsIn.removeAttribute('aria-invalid');
          showError(error, '');
        }
        dirty();
      };
      active.onchange = dirty;
      groupsIn.onkeydown = (e: KeyboardEvent) => {
        if (e.key === 'Enter' && !save.disabled) {
          e.preventDefault();
          void update();
        }
      };
      const update = async () => {
        let parsed: string[];
        try {
          parsed = parseGroups(groupsIn.value);
        } catch (e) {
          showError(error, `${who}: ${(e as Error).message}`);
          groupsIn.setAttribute('aria-invalid', 'true');
          groupsIn.focus();
          return;
        }
        const changes: { role?: Role; groups?: string[]; active?: boolean } = {};
        if (roleSel.value !== u.role) {
          changes.role = roleSel.value as Role;
        }
        if (parsed.join(',') !== u.groups.join(',')) {
          changes.groups = parsed;
        }
        if (active.checked !== u.active) {
          changes.active = active.checked;
        }
        try {
          await this.model.api.updateUser(who, changes);
          showError(error, '');
          await load();
          (tbody.querySelector(`tr[data-user="${CSS.escape(who)}"] select`) as HTMLElement | null)?.focus();
        } catch (e) {
          showError(error, errorText(e, who));
        }
      };
      const me = this.model.me?.username === who;
      return h(
        'tr',
        { 'data-user': who, class: u.active ? '' : 'kr-mod-inactive' },
        h('td', null, who, me ? h('span', { class: 'kr-Muted' }, ' (you)') : null),
        h('td', null, roleSel),
        h('td', null, groupsIn),
        h('td', null, active),
        h('td', null, formatTime(u.last_seen_at)),
        h('td', null, u.created_by),
        h('td', null, admin ? save : null)
      );
    };
    const add = async () => {
      const username = name.value.trim();
      if (!validUsername(username)) {
        showError(error, username ? `invalid user name ${JSON.stringify(username)}` : 'user name: enter one');
        name.focus();
        return;
      }
      let parsed: string[];
      try {
        parsed = parseGroups(groups.value);
      } catch (e) {
        showError(error, (e as Error).message);
        groups.focus();
        return;
      }
      try {
        await this.model.api.createUser(username, role.value as Role, parsed);
        name.value = '';
        groups.value = '';
        role.value = 'user';
        showError(error, '');
        await load();
      } catch (e) {
        showError(error, errorText(e, 'add user'));
      }
    };
    this._loaders.push(load);
    return el;
  }

  // ===== quotas =====

  private _quotasSection(): HTMLElement {
    const admin = this.model.caps.admin;
    const tbody = h('tbody');
    const kind = h('select', { class: 'jp-mod-styled', id: 'kr-quota-kind', 'aria-label': 'Quota for a user or a group' }, h('option', { value: 'user' }, 'user'), h('option', { value: 'group' }, 'group'));
    const name = h('input', { class: 'jp-mod-styled', id: 'kr-quota-name', placeholder: 'name', 'aria-label': 'User or group name' });
    const limits: Record<string, HTMLInputElement> = {};
    for (const key of QUOTA_LIMITS) {
      limits[key] = h('input', {
        class: 'jp-mod-styled kr-Narrow',
        type: 'number',
        min: 0,
        id: `kr-quota-${key}`,
        placeholder: 'no limit',
        'aria-label': key.replace('max_', 'max ')
      });
    }
    const labels: Record<string, string> = { max_gpus: 'GPUs', max_cores: 'cores', max_tasks: 'tasks', max_vps: 'VPS' };
    const { el, error } = section(
      'quotas',
      'Quotas',
      h('p', { class: 'kr-Muted' }, 'Most a user or group may hold at once; tasks over it stay pending ("quota: …"). Empty: no limit.'),
      admin
        ? h(
            'form',
            {
              class: 'kr-Toolbar',
              'aria-label': 'Set a quota',
              novalidate: true,
              onsubmit: (e: Event) => {
                e.preventDefault();
                void save();
              }
            },
            kind,
            name,
            QUOTA_LIMITS.map(k => h('label', { class: 'kr-Toggle', for: limits[k].id }, labels[k], limits[k])),
            h('button', { type: 'submit', class: 'jp-Button jp-mod-styled jp-mod-accept kr-Button' }, 'Save quota')
          )
        : null,
      h(
        'table',
        { class: 'kr-Table', 'aria-label': 'Quotas' },
        h('thead', null, h('tr', null, ['Subject', 'GPUs', 'Cores', 'Tasks', 'VPS', ''].map(c => h('th', null, c)))),
        tbody
      )
    );
    const load = async () => {
      try {
        const quotas = await this.model.api.quotas();
        showError(error, '');
        replaceChildren(
          tbody,
          quotas.length ? quotas.map(q => row(q)) : h('tr', null, h('td', { colspan: 6, class: 'kr-Muted' }, 'No quotas: nobody is limited.'))
        );
      } catch (e) {
        showError(error, errorText(e, 'quotas'));
      }
    };
    const row = (q: IQuota): HTMLElement =>
      h(
        'tr',
        { 'data-quota': q.subject },
        h('td', null, q.subject),
        QUOTA_LIMITS.map(k => h('td', null, formatLimit(q[k]))),
        h(
          'td',
          null,
          admin
            ? [
                button('Edit', () => edit(q), { title: `Edit the quota of ${q.subject}` }),
                ' ',
                button('Delete', () => void remove(q), { cls: 'kr-mod-danger', title: `Delete the quota of ${q.subject}` })
              ]
            : null
        )
      );
    const edit = (q: IQuota) => {
      const s = splitSubject(q.subject);
      kind.value = s.kind;
      name.value = s.name;
      for (const k of QUOTA_LIMITS) {
        limits[k].value = q[k] === null || q[k] === undefined ? '' : String(q[k]);
      }
      name.focus();
    };
    const save = async () => {
      const form: IQuotaForm = {
        kind: kind.value as 'user' | 'group',
        name: name.value,
        max_gpus: limits.max_gpus.value,
        max_cores: limits.max_cores.value,
        max_tasks: limits.max_tasks.value,
        max_vps: limits.max_vps.value
      };
      const built = buildQuota(form);
      for (const input of [name, ...Object.values(limits)]) {
        input.removeAttribute('aria-invalid');
      }
      if (built.errors) {
        const [field, message] = Object.entries(built.errors)[0];
        const control = field === 'subject' ? name : limits[field];
        control.setAttribute('aria-invalid', 'true');
        control.focus();
        showError(error, `${field === 'subject' ? 'name' : field}: ${message}`);
        return;
      }
      try {
        await this.model.api.putQuota(built.quota);
        showError(error, '');
        name.value = '';
        for (const input of Object.values(limits)) {
          input.value = '';
        }
        await load();
      } catch (e) {
        showError(error, errorText(e, 'save quota'));
      }
    };
    const remove = async (q: IQuota) => {
      const result = await showDialog({
        title: `Delete the quota of ${q.subject}?`,
        body: 'Its tasks are no longer limited.',
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
      });
      if (result.button.accept) {
        try {
          await this.model.api.deleteQuota(q.subject);
          showError(error, '');
        } catch (e) {
          showError(error, errorText(e, 'delete quota'));
        }
        await load();
      }
    };
    this._loaders.push(load);
    return el;
  }

  // ===== audit log =====

  private _auditSection(): HTMLElement {
    const pager = new CursorPager();
    const tbody = h('tbody');
    const actor = h('input', { class: 'jp-mod-styled', id: 'kr-audit-actor', placeholder: 'actor', 'aria-label': 'Filter the audit log by actor' });
    const action = h('input', { class: 'jp-mod-styled', id: 'kr-audit-action', placeholder: 'action (e.g. user.updated)', 'aria-label': 'Filter the audit log by action' });
    const where = h('span', { class: 'kr-Muted', role: 'status', 'data-kr': 'audit-page' });
    const newest = button('Newest', () => {
      pager.reset();
      void load();
    }, { title: 'The newest audit events' });
    const newer = button('‹ Newer', () => {
      pager.newer();
      void load();
    }, { title: 'Newer audit events' });
    const older = button('Older ›', () => {
      if (this._lastAudit) {
        pager.older(this._lastAudit);
        void load();
      }
    }, { title: 'Older audit events' });
    const { el, error } = section(
      'audit',
      'Audit log',
      h(
        'form',
        {
          class: 'kr-Toolbar',
          'aria-label': 'Filter the audit log',
          onsubmit: (e: Event) => {
            e.preventDefault();
            pager.reset();
            void load();
          }
        },
        actor,
        action,
        h('button', { type: 'submit', class: 'jp-Button jp-mod-styled kr-Button' }, 'Filter'),
        button('Refresh', () => void load(), { title: 'Reload this page of the audit log' })
      ),
      h(
        'table',
        { class: 'kr-Table kr-AuditTable', 'aria-label': 'Audit log, newest first' },
        h('thead', null, h('tr', null, ['Time', 'Actor', 'Action', 'Target', 'Detail', 'Address'].map(c => h('th', null, c)))),
        tbody
      ),
      h('div', { class: 'kr-Pager' }, newest, newer, where, older)
    );
    const load = async () => {
      try {
        const events = await this.model.api.audit({
          limit: AUDIT_PAGE,
          before: pager.current,
          actor: actor.value.trim() || undefined,
          action: action.value.trim() || undefined
        });
        showError(error, '');
        this._lastAudit = events.length ? events[events.length - 1].event_id : '';
        replaceChildren(
          tbody,
          events.length ? events.map(e => row(e)) : h('tr', null, h('td', { colspan: 6, class: 'kr-Muted' }, 'No audit events.'))
        );
        where.textContent = `page ${pager.page}`;
        newest.disabled = newer.disabled = !pager.hasNewer;
        older.disabled = events.length < AUDIT_PAGE;
      } catch (e) {
        showError(error, errorText(e, 'audit log'));
      }
    };
    const row = (e: IAuditEvent): HTMLElement =>
      h(
        'tr',
        { 'data-event': e.event_id, 'data-action': e.action },
        h('td', null, formatTime(e.at)),
        h('td', null, e.actor),
        h('td', { class: 'kr-Mono' }, e.action),
        h('td', null, e.target ?? ''),
        h('td', { class: 'kr-AuditDetail', title: e.detail ? JSON.stringify(e.detail) : '' }, formatDetail(e.detail)),
        h('td', null, e.address ?? '')
      );
    this._loaders.push(load);
    return el;
  }

  private _whoami: HTMLElement;
  private _body: HTMLElement;
  private _loaders: (() => Promise<void>)[] = [];
  private _lastAudit = '';
}
