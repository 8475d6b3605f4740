/**
 * Typed client of the host's REST API and WebSocket URLs. Every request goes through
 * `ServerConnection.makeRequest`, which adds the Jupyter token and the XSRF header.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import {
  IClusterSummary,
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

/** A non-2xx answer of the host: its status and its `{"message"}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

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

  action(id: string, action: 'kill' | 'pause' | 'resume'): Promise<ITaskInfo> {
    return this.request('POST', `tasks/${id}/${action}`);
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

  /** Who the caller is to the cluster: the owner name its tasks get. */
  async me(): Promise<string> {
    return (await this.request<{ username: string }>('GET', 'me')).username;
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
}
