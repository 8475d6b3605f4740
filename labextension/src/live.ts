/**
 * The events WebSocket (`/kohakuriver/api/events`) with reconnect and backoff. While the
 * socket is down the owner polls over REST; after each (re)connect it re-reads over REST
 * once (`resync`), because events sent while disconnected are gone.
 */

import { ISignal, Signal } from '@lumino/signaling';

import { ClusterApi } from './api';
import { Backoff, ClusterEvent } from './models';

export type LiveState = 'connecting' | 'live' | 'down' | 'closed';

export class LiveEvents {
  constructor(
    readonly api: ClusterApi,
    readonly topics = 'tasks,nodes'
  ) {}

  get state(): LiveState {
    return this._state;
  }

  /** Each frame after `subscribed`. */
  get received(): ISignal<this, ClusterEvent> {
    return this._received;
  }

  /** The state changed; on `live` the owner should re-read over REST. */
  get stateChanged(): ISignal<this, LiveState> {
    return this._stateChanged;
  }

  start(): void {
    if (this._state === 'closed' || this._socket) {
      return;
    }
    this._connect();
  }

  dispose(): void {
    this._setState('closed');
    window.clearTimeout(this._timer);
    const socket = this._socket;
    this._socket = null;
    socket?.close();
  }

  private _connect(): void {
    this._setState('connecting');
    let socket: WebSocket;
    try {
      socket = new WebSocket(this.api.wsUrl('events', { topics: this.topics }));
    } catch {
      this._scheduleReconnect();
      return;
    }
    this._socket = socket;
    socket.onmessage = (msg: MessageEvent) => {
      let event: ClusterEvent;
      try {
        event = JSON.parse(String(msg.data));
      } catch {
        return;
      }
      if (event.type === 'subscribed') {
        this._backoff.reset();
        this._setState('live');
        return;
      }
      this._received.emit(event);
    };
    socket.onclose = () => {
      if (this._socket !== socket) {
        return;
      }
      this._socket = null;
      if (this._state !== 'closed') {
        // 1013 (fell behind) and drops alike: poll meanwhile, reconnect with backoff.
        this._setState('down');
        this._scheduleReconnect();
      }
    };
    // onerror is always followed by onclose; nothing to do (and nothing to log).
    socket.onerror = () => undefined;
  }

  private _scheduleReconnect(): void {
    window.clearTimeout(this._timer);
    this._timer = window.setTimeout(() => this._connect(), this._backoff.next());
  }

  private _setState(state: LiveState): void {
    if (this._state !== state) {
      this._state = state;
      this._stateChanged.emit(state);
    }
  }

  private _socket: WebSocket | null = null;
  private _state: LiveState = 'down';
  private _timer = 0;
  private _backoff = new Backoff(1000, 30000);
  private _received = new Signal<this, ClusterEvent>(this);
  private _stateChanged = new Signal<this, LiveState>(this);
}
