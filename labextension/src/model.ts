/**
 * The panel's state: where it stands with the active notebook's kernel, and what that kernel
 * last reported. The view re-renders on `stateChanged`; see docs/sidebar.md for the protocol.
 */
import { VDomModel } from '@jupyterlab/ui-components';

/** The comm target `%load_ext mc_jupyter` registers in the kernel (mc_jupyter/sidebar.py). */
export const COMM_TARGET = 'mc_jupyter.sidebar';

/**
 * One component, as the kernel describes it (`sidebar.component_rows()`: `Entry.describe()` in
 * mc_jupyter/registry.py, plus its `activity` marks from mc_jupyter/activity.py).
 */
export interface IComponent {
  id: string;
  type: string;
  task: string | null;
  driver: string | null;
  model: string | null;
  /** A vector store: its vectors, dimensions, metric and where it is kept. */
  store: string | null;
  device: string | null;
  dtype: string | null;
  quantization: string | null;
  parameters: number | null;
  memory_bytes: number | null;
  placement: { [device: string]: number } | null;
  state: string;
  load_seconds: number;
  error: string;
  /** What the kernel does with it beyond its state, oldest first: `chat`, `chat: generating`. */
  activity: string[];
}

export interface IGpu {
  index: number;
  name: string;
  total: number;
  used: number;
  allocated_by_kernel: number;
}

/** `sidebar.kernel_memory()`: host RAM, the kernel's RSS, each GPU. */
export interface IMemory {
  host: { total: number; available: number };
  process_rss: number;
  gpus: IGpu[];
  /** False until the kernel imports torch: before that an empty `gpus` means "not asked yet". */
  gpus_known: boolean;
}

/** What the kernel sends. */
export type KernelMessage =
  | { type: 'snapshot'; components: IComponent[]; memory: IMemory }
  | { type: 'memory'; memory: IMemory }
  | { type: 'error'; message: string };

/** What the panel sends; the kernel refuses anything else. */
export type Command =
  | { command: 'refresh' }
  | { command: 'keepalive' }
  | { command: 'unload' | 'stop'; id: string };

/** Where the panel stands; each state but `connected` has an empty state with its remedy. */
export type Status =
  | 'no-notebook'
  | 'no-kernel'
  | 'restarting'
  | 'not-loaded'
  | 'busy'
  | 'connecting'
  | 'connected';

export class SidebarModel extends VDomModel {
  get status(): Status {
    return this._status;
  }

  /** The active notebook's name, '' when there is none. */
  get notebook(): string {
    return this._notebook;
  }

  get components(): ReadonlyArray<IComponent> {
    return this._components;
  }

  get memory(): IMemory | null {
    return this._memory;
  }

  /** How many memory figures (snapshots and samples) the kernel sent over this connection. */
  get samples(): number {
    return this._samples;
  }

  /** The kernel's last error reply (or a connection problem), until the next snapshot. */
  get error(): string {
    return this._error;
  }

  /** Whether a component has an unload/stop on its way to the kernel. */
  isPending(id: string): boolean {
    return this._pending.has(id);
  }

  setNotebook(name: string): void {
    this._notebook = name;
    this.stateChanged.emit();
  }

  /** Move to `status`; leaving `connected` forgets what the kernel reported. */
  setStatus(status: Status, error = ''): void {
    if (status !== 'connected' && status !== 'connecting') {
      this._components = [];
      this._memory = null;
      this._samples = 0;
      this._pending.clear();
    }
    this._status = status;
    this._error = error;
    this.stateChanged.emit();
  }

  markPending(id: string): void {
    this._pending.add(id);
    this.stateChanged.emit();
  }

  /** Take in one kernel message (unknown types are ignored: an older panel, a newer kernel). */
  receive(message: KernelMessage): void {
    switch (message.type) {
      case 'snapshot':
        this._status = 'connected';
        this._components = message.components;
        this._memory = message.memory;
        this._samples++;
        this._error = '';
        this._pending = new Set(
          [...this._pending].filter(id => message.components.some(c => c.id === id))
        );
        break;
      case 'memory':
        this._memory = message.memory;
        this._samples++;
        break;
      case 'error':
        this._error = message.message;
        this._pending.clear();
        break;
      default:
        return;
    }
    this.stateChanged.emit();
  }

  private _status: Status = 'no-notebook';
  private _notebook = '';
  private _components: IComponent[] = [];
  private _memory: IMemory | null = null;
  private _samples = 0;
  private _error = '';
  private _pending = new Set<string>();
}
