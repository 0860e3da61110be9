/**
 * The panel's lifecycle: it follows the active notebook, and keeps one comm open to that
 * notebook's kernel while the panel is visible and the kernel has loaded mc_jupyter.
 *
 * - Finding out whether the kernel loaded mc_jupyter: a `comm_info_request` for the target lists
 *   the beacon comm that `%load_ext mc_jupyter` registers. It is asked when the panel attaches to a
 *   kernel, after a restart, and after each executed cell while the answer is "not loaded" (and,
 *   while a cell runs, every few seconds: the cell may be the one that loads it).
 * - A busy kernel: the question and the comm travel on the comm target's kernel *subshell*
 *   (JEP 91; JupyterLab 4.4+ opens one per comm target, ipykernel 7 runs it on a thread of its own),
 *   so a kernel running a long cell answers at once, and its memory samples keep coming. A kernel
 *   without subshells answers when the cell ends; meanwhile the panel says it is busy, never "not
 *   loaded".
 * - Restarts: the comm goes with the old kernel process; the first idle afterwards asks again.
 * - Leases: the kernel closes a comm it has not heard from for two minutes (a panel whose page was
 *   reloaded never says goodbye); a live panel sends `keepalive` every 20 s, and reopens a comm the
 *   kernel closed.
 */
import { ISessionContext } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Panel } from '@lumino/widgets';

import {
  COMM_TARGET,
  Command,
  IComponent,
  KernelMessage as SidebarMessage,
  SidebarModel,
  Status
} from './model';
import { SidebarView } from './widget';

const KEEPALIVE_MS = 20_000;
/** How long a question may wait on a busy kernel before the panel says so. */
const BUSY_MS = 1_000;
/** How long a goodbye may wait for the kernel before its subshell is let go regardless. */
const CLOSE_MS = 10_000;
/** While a cell runs in a kernel without mc_jupyter, how often to ask again (on a subshell). */
const REASK_MS = 3_000;

/** What `CommHandler` (services 7.4+) adds to `Kernel.IComm`: the subshell its messages use. */
type SubshellComm = Kernel.IComm & {
  commsOverSubshells?: string;
  subshellId?: string | null;
  subshellStarted?: Promise<void>;
};

/** Kernel states in which there is no kernel process to talk to yet. */
const STARTING: ReadonlySet<Kernel.Status> = new Set<Kernel.Status>([
  'unknown',
  'starting',
  'restarting',
  'autorestarting'
]);
const GONE: ReadonlySet<Kernel.Status> = new Set<Kernel.Status>(['dead', 'terminating']);

const chipIcon = new LabIcon({
  name: 'mc-jupyter:chip',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">' +
    '<g class="jp-icon3" fill="#616161"><path d="M9 9h6v6H9z"/><path d="M21 11V9h-2V7a2 2 0 0 0-2-2h-2V3h-2v2h-2' +
    'V3H9v2H7a2 2 0 0 0-2 2v2H3v2h2v2H3v2h2v2a2 2 0 0 0 2 2h2v2h2v-2h2v2h2v-2h2a2 2 0 0 0 2-2v-2h2v-2h-2v-2zm-4' +
    ' 6H7V7h10z"/></g></svg>'
});

export class SidebarPanel extends Panel {
  constructor(tracker: INotebookTracker) {
    super();
    this.id = 'mc-jupyter-sidebar';
    this.addClass('mc-Sidebar');
    this.title.icon = chipIcon;
    this.title.caption = 'mc_jupyter: models, servers and memory of the active kernel';
    this.addWidget(
      new SidebarView(this._model, {
        free: component => this._free(component),
        refresh: () => this._send({ command: 'refresh' })
      })
    );
    tracker.currentChanged.connect((_, notebook) => this._follow(notebook), this);
    this._follow(tracker.currentWidget);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._follow(null);
    this._model.dispose();
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._check();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._disconnect(true); // nobody is looking: the kernel stops sampling
    this._stopReasking();
    this._forget();
  }

  /**
   * Without a comm the components and figures on screen are stale: say "Connecting" until the next
   * snapshot (else, shown again, the panel offers Unload on a card the kernel is not yet listening for).
   */
  private _forget(): void {
    if (this._model.status === 'connected' || this._model.status === 'busy') {
      this._model.setStatus('connecting');
    }
  }

  /** Attach to the notebook's session context (null: no notebook is open). */
  private _follow(notebook: NotebookPanel | null): void {
    const previous = this._context;
    if (previous) {
      previous.kernelChanged.disconnect(this._onKernelChanged, this);
      previous.statusChanged.disconnect(this._onStatus, this);
      previous.connectionStatusChanged.disconnect(this._check, this);
      previous.iopubMessage.disconnect(this._onIopub, this);
    }
    this._notebook?.title.changed.disconnect(this._onTitle, this);
    this._disconnect(true);
    this._stopReasking();
    this._notLoadedFor = null;
    this._forget(); // another notebook's components are not this one's
    this._notebook = notebook;
    this._context = notebook?.sessionContext ?? null;
    if (notebook && this._context) {
      this._context.kernelChanged.connect(this._onKernelChanged, this);
      this._context.statusChanged.connect(this._onStatus, this);
      this._context.connectionStatusChanged.connect(this._check, this);
      this._context.iopubMessage.connect(this._onIopub, this);
      notebook.title.changed.connect(this._onTitle, this);
    }
    this._onTitle();
    this._check();
  }

  private _onTitle(): void {
    this._model.setNotebook(this._notebook?.title.label ?? '');
  }

  private _onKernelChanged(): void {
    this._disconnect(true);
    this._stopReasking();
    this._notLoadedFor = null;
    this._forget();
    this._check();
  }

  private _onStatus(_: ISessionContext, status: Kernel.Status): void {
    if (STARTING.has(status)) {
      this._notLoadedFor = null; // a new process: ask again once it is up
    }
    this._check();
  }

  /** After a cell ran in a kernel without mc_jupyter, ask again: it may have run `%load_ext`. */
  private _onIopub(_: ISessionContext, msg: KernelMessage.IMessage): void {
    if (
      this._notLoadedFor &&
      KernelMessage.isStatusMsg(msg) &&
      msg.content.execution_state === 'idle' &&
      (msg.parent_header as Partial<KernelMessage.IHeader>).msg_type === 'execute_request'
    ) {
      this._notLoadedFor = null;
      this._check();
    }
  }

  private _kernel(): Kernel.IKernelConnection | null {
    return this._context?.session?.kernel ?? null;
  }

  /** Bring the panel in line with the facts: notebook, kernel state, visibility, comm. */
  private _check(): void {
    const kernel = this._kernel();
    if (this._comm?.isDisposed) {
      this._comm = null; // the kernel connection cleared its comms (a restart, a new session)
    }
    if (!this._context) {
      return this._settle('no-notebook');
    }
    if (!kernel || GONE.has(kernel.status)) {
      return this._settle('no-kernel');
    }
    if (STARTING.has(kernel.status)) {
      return this._settle('restarting');
    }
    if (this._notLoadedFor === kernel) {
      this._settle('not-loaded', this._model.error);
      if (kernel.status === 'busy' && this.isVisible && kernel.supportsSubshells) {
        this._reaskSoon(kernel);
      }
      return;
    }
    if (!this.isVisible || this._comm || this._probing === kernel) {
      return;
    }
    this._probe(kernel);
  }

  /** A state without a comm: close the one there is (no message to a kernel that is going). */
  private _settle(status: Status, error = ''): void {
    this._disconnect(status === 'not-loaded');
    if (this._model.status !== status || this._model.error !== error) {
      this._model.setStatus(status, error);
    }
  }

  /**
   * Ask whether the kernel loaded mc_jupyter, on the subshell of a comm made for it (not opened:
   * nothing reaches the kernel's comm manager yet); when it did, open that comm.
   */
  private _probe(kernel: Kernel.IKernelConnection): void {
    this._probing = kernel;
    const comm = kernel.createComm(COMM_TARGET) as SubshellComm;
    const busy = window.setTimeout(() => {
      if (this._probing === kernel && kernel.status === 'busy' && this._model.status !== 'not-loaded') {
        this._model.setStatus('busy');
      }
    }, BUSY_MS);
    this._askCommInfo(kernel, comm).then(
      loaded => {
        window.clearTimeout(busy);
        if (this._probing !== kernel) {
          comm.dispose();
          return;
        }
        this._probing = null;
        if (!loaded) {
          this._notLoadedFor = kernel;
          comm.dispose();
        } else if (kernel === this._kernel() && this.isVisible && !this._comm) {
          this._connect(kernel, comm);
        } else {
          comm.dispose();
        }
        this._check();
      },
      () => {
        window.clearTimeout(busy);
        comm.dispose();
        if (this._probing === kernel) {
          this._probing = null; // cancelled by a restart: its status change brings us back
        }
      }
    );
  }

  /** `comm_info_request` for the target, on `comm`'s subshell when the kernel has subshells. */
  private async _askCommInfo(kernel: Kernel.IKernelConnection, comm: SubshellComm): Promise<boolean> {
    await kernel.info; // tells whether the kernel has subshells
    let subshellId: string | null = null;
    if (kernel.supportsSubshells && comm.subshellStarted && comm.commsOverSubshells !== 'disabled') {
      try {
        await comm.subshellStarted;
        subshellId = comm.subshellId ?? null;
      } catch {
        subshellId = null; // no subshell after all: the main shell answers when it can
      }
    }
    const msg = KernelMessage.createMessage({
      msgType: 'comm_info_request',
      channel: 'shell',
      username: kernel.username,
      session: kernel.clientId,
      subshellId,
      content: { target_name: COMM_TARGET }
    });
    const reply = (await kernel.sendShellMessage(msg, true, true).done) as KernelMessage.ICommInfoReplyMsg;
    const content = reply.content;
    return content.status === 'ok' && Object.keys(content.comms).length > 0;
  }

  private _reaskSoon(kernel: Kernel.IKernelConnection): void {
    if (this._reask) {
      return;
    }
    this._reask = window.setTimeout(() => {
      this._reask = 0;
      if (this._notLoadedFor === kernel && kernel.status === 'busy') {
        this._notLoadedFor = null;
        this._check();
      }
    }, REASK_MS);
  }

  private _stopReasking(): void {
    window.clearTimeout(this._reask);
    this._reask = 0;
  }

  /** Open `comm` (made by `_probe`, on the subshell it asked on) and listen to it. */
  private _connect(kernel: Kernel.IKernelConnection, comm: SubshellComm): void {
    let heard = false;
    comm.onMsg = msg => {
      if (this._comm === comm) {
        heard = true;
        this._model.receive(msg.content.data as unknown as SidebarMessage);
      }
    };
    comm.onClose = () => {
      if (this._comm !== comm) {
        return; // closed by us
      }
      this._comm = null;
      window.clearInterval(this._keepalive);
      if (!heard) {
        // Closed before its first snapshot: something is wrong in the kernel; do not loop.
        this._notLoadedFor = kernel;
        this._model.setStatus('not-loaded', 'The kernel closed the sidebar connection; see its log.');
        return;
      }
      this._forget();
      this._check(); // e.g. the lease ran out while the page was asleep: open a new comm
    };
    this._comm = comm;
    this._commKernel = kernel;
    // Without a subshell, the comm_open waits for the running cell to end: say so.
    this._model.setStatus(!comm.subshellId && kernel.status === 'busy' ? 'busy' : 'connecting');
    comm.open({});
    this._keepalive = window.setInterval(() => this._send({ command: 'keepalive' }), KEEPALIVE_MS);
  }

  /** Drop the comm; `sayGoodbye`: tell the kernel (not when its process is going anyway). */
  private _disconnect(sayGoodbye: boolean): void {
    const comm = this._comm;
    const kernel = this._commKernel;
    this._comm = null;
    this._commKernel = null;
    this._probing = null;
    window.clearInterval(this._keepalive);
    if (!comm || comm.isDisposed) {
      return;
    }
    try {
      if (sayGoodbye) {
        this._close(comm as SubshellComm, kernel);
      } else {
        comm.dispose();
      }
    } catch {
      comm.dispose(); // the kernel connection is gone already
    }
  }

  /**
   * `comm.close()`, except that the comm's subshell lives until the kernel has handled the close.
   * `close()` sends `comm_close` on the subshell and at once disposes the comm, which asks (on the
   * control channel) to delete the subshell when it was the target's last comm: the deletion can
   * overtake the close, and ipykernel stops the subshell's thread with the close still queued; the
   * kernel would then sample for a panel nobody looks at until the lease ran out.
   */
  private _close(comm: SubshellComm, kernel: Kernel.IKernelConnection | null): void {
    comm.onMsg = () => undefined;
    comm.onClose = () => undefined;
    if (!comm.subshellId || !kernel || kernel.isDisposed) {
      comm.close(); // on the main shell: nothing can overtake it
      return;
    }
    const future = kernel.sendShellMessage(
      KernelMessage.createMessage({
        msgType: 'comm_close',
        channel: 'shell',
        username: kernel.username,
        session: kernel.clientId,
        subshellId: comm.subshellId,
        content: { comm_id: comm.commId, data: {} }
      }),
      false,
      true
    );
    const dispose = () => {
      window.clearTimeout(timer);
      comm.dispose();
    };
    const timer = window.setTimeout(dispose, CLOSE_MS); // a kernel that never answers
    future.done.then(dispose, dispose);
  }

  private _send(command: Command): void {
    if (this._comm && !this._comm.isDisposed) {
      this._comm.send(command);
    }
  }

  private _free(component: IComponent): void {
    this._model.markPending(component.id);
    this._send({ command: component.type === 'http-server' ? 'stop' : 'unload', id: component.id });
  }

  private _model = new SidebarModel();
  private _notebook: NotebookPanel | null = null;
  private _context: ISessionContext | null = null;
  private _comm: Kernel.IComm | null = null;
  /** The kernel connection `_comm` was opened on (the session's kernel may have changed since). */
  private _commKernel: Kernel.IKernelConnection | null = null;
  private _probing: Kernel.IKernelConnection | null = null;
  private _notLoadedFor: Kernel.IKernelConnection | null = null;
  private _keepalive = 0;
  private _reask = 0;
}
