/**
 * Typed client of the host's REST API and WebSocket URLs. Every request goes through
 * `ServerConnection.makeRequest`, which adds the Jupyter token and the XSRF header.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { ApiError } from './errors';
import {
  IApiToken,
  IApiTokenCreate,
  IAuditEvent,
  IClusterSettings,
  IClusterSummary,
  IEnvironment,
  IEnvironmentVersion,
  IExecResult,
  IMe,
  IQuota,
  ISnapshot,
  IUserInfo,
  IUserUpdate,
  Role,
  ILogChunk,
  INodeInfo,
  IRunnerToken,
  ISubmitBody,
  ITaskEvent,
  ITaskInfo,
  ITaskPage,
  TaskStatus,
  TaskType
} from './models';

export const API_PREFIX = 'kohakuriver/api';

export { ApiError };

export interface ITaskQuery {
  status?: TaskStatus[];
  node?: string;
  owner?: string;
  batch?: string;
  /** Only tasks of this type (`command`, `vps`, `notebook`). */
  type?: TaskType | '';
  limit?: number;
  cursor?: string | null;
  /** Ask for `total`: all tasks matching the filters, whatever the cursor. */
  count?: boolean;
}

export class ClusterApi {
  constructor(readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  url(...parts: string[]): string {
    return URLExt.join(this.settings.baseUrl, API_PREFIX, ...parts);
  }

  /** A `ws(s)://` URL under the API, with the token when the settings want it appended. */
  wsUrl(path: string, query: Record<string, string> = {}): string {
    const q: Record<string, string> = { ...query };
    if (this.settings.appendToken && this.settings.token) {
      q.token = this.settings.token;
    }
    return URLExt.join(this.settings.wsUrl, API_PREFIX, path) + URLExt.objectToQueryString(q);
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(this.url(path), init, this.settings);
    } catch (error) {
      throw new ApiError(0, `cannot reach the cluster host: ${(error as Error).message}`);
    }
    const text = await response.text();
    let data: any = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const message = (data && (data.message || data.reason)) || response.statusText;
      throw new ApiError(response.status, String(message));
    }
    return data as T;
  }

  // ----- tasks -----

  listTasks(query: ITaskQuery = {}): Promise<ITaskPage> {
    const q: Record<string, string> = {};
    if (query.status?.length) {
      q.status = query.status.join(',');
    }
    for (const key of ['node', 'owner', 'batch', 'type', 'cursor'] as const) {
      const value = query[key];
      if (value) {
        q[key] = value;
      }
    }
    if (query.limit) {
      q.limit = String(query.limit);
    }
    if (query.count) {
      q.count = 'true';
    }
    return this.request('GET', 'tasks' + URLExt.objectToQueryString(q));
  }

  getTask(id: string): Promise<ITaskInfo> {
    return this.request('GET', `tasks/${id}`);
  }

  async taskEvents(id: string): Promise<ITaskEvent[]> {
    return (await this.request<{ events: ITaskEvent[] }>('GET', `tasks/${id}/events`)).events;
  }

  submit(body: ISubmitBody): Promise<{ task_ids: string[]; batch_id: string }> {
    return this.request('POST', 'tasks', body);
  }

  action(id: string, action: 'kill' | 'pause' | 'resume' | 'start' | 'approve'): Promise<ITaskInfo> {
    return this.request('POST', `tasks/${id}/${action}`);
  }

  /** Refuse a task waiting for approval (operators); it ends `rejected` with the reason. */
  reject(id: string, reason: string): Promise<ITaskInfo> {
    return this.request('POST', `tasks/${id}/reject`, { reason });
  }

  /** Stop a VPS (`stopped`), committing a snapshot first when `snapshot`. */
  stopVps(id: string, snapshot: boolean): Promise<ITaskInfo> {
    return this.request('POST', `tasks/${id}/stop`, { snapshot });
  }

  async snapshots(id: string): Promise<ISnapshot[]> {
    return (await this.request<{ snapshots: ISnapshot[] }>('GET', `tasks/${id}/snapshots`)).snapshots;
  }

  async createSnapshot(id: string): Promise<ISnapshot[]> {
    return (await this.request<{ snapshots: ISnapshot[] }>('POST', `tasks/${id}/snapshots`)).snapshots;
  }

  deleteSnapshot(id: string, tag: string): Promise<void> {
    return this.request('DELETE', `tasks/${id}/snapshots/${encodeURIComponent(tag)}`);
  }

  logs(id: string, stream: 'stdout' | 'stderr', offset = 0): Promise<ILogChunk> {
    return this.request('GET', `tasks/${id}/logs?stream=${stream}&offset=${offset}`);
  }

  // ----- nodes and cluster -----

  async nodes(): Promise<INodeInfo[]> {
    return (await this.request<{ nodes: INodeInfo[] }>('GET', 'nodes')).nodes;
  }

  node(name: string): Promise<INodeInfo> {
    return this.request('GET', `nodes/${encodeURIComponent(name)}`);
  }

  /** Who the caller is to the cluster: name (the owner its tasks get), role, groups, scopes. */
  me(): Promise<IMe> {
    return this.request('GET', 'me');
  }

  cluster(): Promise<IClusterSummary> {
    return this.request('GET', 'cluster');
  }

  // ----- runner tokens (admin) -----

  async runnerTokens(): Promise<IRunnerToken[]> {
    return (await this.request<{ tokens: IRunnerToken[] }>('GET', 'runner-tokens')).tokens;
  }

  createRunnerToken(name: string, node?: string): Promise<IRunnerToken> {
    return this.request('POST', 'runner-tokens', node ? { name, node } : { name });
  }

  revokeRunnerToken(id: string): Promise<void> {
    return this.request('DELETE', `runner-tokens/${id}`);
  }

  // ----- users (operators list, admins change) -----

  async users(): Promise<IUserInfo[]> {
    return (await this.request<{ users: IUserInfo[] }>('GET', 'users')).users;
  }

  createUser(username: string, role: Role, groups: string[]): Promise<IUserInfo> {
    return this.request('POST', 'users', { username, role, groups });
  }

  updateUser(username: string, changes: IUserUpdate): Promise<IUserInfo> {
    return this.request('PATCH', `users/${encodeURIComponent(username)}`, changes);
  }

  // ----- personal API tokens -----

  async apiTokens(): Promise<IApiToken[]> {
    return (await this.request<{ tokens: IApiToken[] }>('GET', 'tokens')).tokens;
  }

  createApiToken(body: IApiTokenCreate): Promise<IApiToken> {
    return this.request('POST', 'tokens', body);
  }

  revokeApiToken(id: string): Promise<void> {
    return this.request('DELETE', `tokens/${id}`);
  }

  // ----- settings, quotas, audit -----

  settingsOf(): Promise<IClusterSettings> {
    return this.request('GET', 'settings');
  }

  updateSettings(changes: Partial<IClusterSettings>): Promise<IClusterSettings> {
    return this.request('PATCH', 'settings', changes);
  }

  async quotas(): Promise<IQuota[]> {
    return (await this.request<{ quotas: IQuota[] }>('GET', 'quotas')).quotas;
  }

  putQuota(quota: IQuota): Promise<IQuota> {
    return this.request('PUT', 'quotas', quota);
  }

  deleteQuota(subject: string): Promise<void> {
    return this.request('DELETE', `quotas/${encodeURIComponent(subject)}`);
  }

  /** The audit log, newest first; `before` (an event ID) for the next page. */
  async audit(query: { limit?: number; before?: string | null; actor?: string; action?: string } = {}): Promise<IAuditEvent[]> {
    const q: Record<string, string> = {};
    for (const key of ['before', 'actor', 'action'] as const) {
      const value = query[key];
      if (value) {
        q[key] = value;
      }
    }
    if (query.limit) {
      q.limit = String(query.limit);
    }
    return (await this.request<{ events: IAuditEvent[] }>('GET', 'audit' + URLExt.objectToQueryString(q))).events;
  }

  // ----- environments (operators change) -----

  async environments(): Promise<IEnvironment[]> {
    return (await this.request<{ environments: IEnvironment[] }>('GET', 'environments')).environments;
  }

  createEnvironment(name: string, image: string, node?: string): Promise<IEnvironment> {
    return this.request('POST', 'environments', node ? { name, image, node } : { name, image });
  }

  /** Run an argv (never a shell string) in the environment's container. */
  execEnvironment(name: string, command: string[]): Promise<IExecResult> {
    return this.request('POST', `environments/${encodeURIComponent(name)}/exec`, { command });
  }

  commitEnvironment(name: string, tag?: string): Promise<IEnvironmentVersion> {
    return this.request('POST', `environments/${encodeURIComponent(name)}/versions`, tag ? { tag } : {});
  }

  deleteEnvironment(name: string, versions: boolean): Promise<void> {
    return this.request('DELETE', `environments/${encodeURIComponent(name)}${versions ? '?versions=true' : ''}`);
  }

  deleteEnvironmentVersion(name: string, version: number): Promise<void> {
    return this.request('DELETE', `environments/${encodeURIComponent(name)}/versions/${version}`);
  }
}
