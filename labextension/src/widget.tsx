/**
 * Rendering only: the model's state as components and device memory, or an empty state that
 * says what to do.
 */
import { VDomRenderer } from '@jupyterlab/ui-components';
import * as React from 'react';

import { IComponent, IMemory, SidebarModel } from './model';

export interface IActions {
  /** Unload a model, stop a server. */
  free(component: IComponent): void;
  refresh(): void;
}

export class SidebarView extends VDomRenderer<SidebarModel> {
  constructor(model: SidebarModel, actions: IActions) {
    super(model);
    this._actions = actions;
    this.addClass('mc-SidebarView');
  }

  protected render(): React.ReactElement {
    const m = this.model;
    return (
      <div className="mc-Sidebar-body" data-status={m.status}>
        <header className="mc-Sidebar-header">
          <h2>mc_jupyter</h2>
          {m.status === 'connected' && (
            <button
              className="jp-Button jp-mod-minimal mc-Sidebar-refresh"
              title="Ask the kernel again"
              onClick={() => this._actions.refresh()}
            >
              ↻
            </button>
          )}
        </header>
        {m.notebook && <div className="mc-Sidebar-notebook">{m.notebook}</div>}
        {m.error && <div className="mc-Sidebar-error">{m.error}</div>}
        {m.status === 'connected' ? this._connected(m) : <EmptyState status={m.status} />}
      </div>
    );
  }

  private _connected(m: SidebarModel): React.ReactElement {
    return (
      <>
        <section className="mc-Sidebar-components">
          <h3>Components</h3>
          {m.components.length === 0 ? (
            <p className="mc-Sidebar-empty">
              Nothing is loaded. Load a model with a <code>%%compose</code> cell.
            </p>
          ) : (
            m.components.map(c => (
              <ComponentCard
                key={c.id}
                component={c}
                pending={m.isPending(c.id)}
                onFree={() => this._actions.free(c)}
              />
            ))
          )}
        </section>
        {m.memory && <Devices memory={m.memory} samples={m.samples} />}
      </>
    );
  }

  private _actions: IActions;
}

const EMPTY_STATES: { [status: string]: React.ReactElement } = {
  'no-notebook': (
    <p>No notebook is open. Open one: this panel shows what its kernel holds.</p>
  ),
  'no-kernel': (
    <p>
      This notebook has no running kernel. Start one with <b>Kernel › Restart Kernel</b> or pick
      one with <b>Kernel › Change Kernel…</b>
    </p>
  ),
  restarting: <p>The kernel is starting… This panel reconnects when it is up.</p>,
  busy: (
    <p>
      The kernel is busy running a cell and cannot answer yet (it offers no subshells). This panel
      connects when it can.
    </p>
  ),
  'not-loaded': (
    <>
      <p>This kernel has not loaded mc_jupyter. Run this in a cell:</p>
      <pre className="mc-Sidebar-remedy">%load_ext mc_jupyter</pre>
    </>
  ),
  connecting: <p>Connecting to the kernel…</p>
};

function EmptyState(props: { status: string }): React.ReactElement {
  return <div className="mc-Sidebar-emptyState">{EMPTY_STATES[props.status]}</div>;
}

function ComponentCard(props: {
  component: IComponent;
  pending: boolean;
  onFree: () => void;
}): React.ReactElement {
  const c = props.component;
  const isServer = c.type === 'http-server';
  const placement = c.placement
    ? Object.entries(c.placement)
        .map(([device, bytes]) => `${device} ${humanBytes(bytes)}`)
        .join(', ')
    : c.device;
  // A loaded model's dtype names its quantization already ("float16 · nf4"); before, the setting does.
  const precision = c.dtype || (c.quantization && c.quantization !== 'none' ? c.quantization : null);
  const rows: [string, string | null][] = [
    ['type', c.task ? `${c.type} · ${c.task}` : c.type],
    ['driver', c.driver],
    ['model', c.model],
    ['store', c.store],
    ['device', placement],
    ['dtype', precision],
    ['memory', c.memory_bytes ? humanBytes(c.memory_bytes) : null],
    ['load', c.load_seconds ? `${c.load_seconds.toFixed(2)} s` : null],
    ['error', c.error || null]
  ];
  return (
    <div className="mc-Component" data-component-id={c.id} data-state={c.state}>
      <div className="mc-Component-head">
        <span className="mc-Component-id">{c.id}</span>
        <span className={`mc-Component-state mc-mod-${c.state}`}>{c.state}</span>
        <button
          className="jp-Button jp-mod-styled jp-mod-warn mc-Component-free"
          disabled={props.pending || c.state === 'loading'}
          title={isServer ? 'Stop this server' : 'Unload this model and free its memory'}
          onClick={props.onFree}
        >
          {props.pending ? '…' : isServer ? 'Stop' : 'Unload'}
        </button>
      </div>
      {c.activity && c.activity.length > 0 && (
        <div className="mc-Component-activity">
          {c.activity.map((what, i) => (
            <span key={i} className="mc-Component-mark" data-activity={what}>
              {what}
            </span>
          ))}
        </div>
      )}
      <dl className="mc-Component-facts">
        {rows
          .filter(([, value]) => value)
          .map(([label, value]) => (
            <React.Fragment key={label}>
              <dt>{label}</dt>
              <dd title={value ?? ''} data-fact={label}>
                {value}
              </dd>
            </React.Fragment>
          ))}
      </dl>
    </div>
  );
}

function Devices(props: { memory: IMemory; samples: number }): React.ReactElement {
  const m = props.memory;
  const hostUsed = m.host.total - m.host.available;
  return (
    <section className="mc-Sidebar-devices" data-samples={props.samples}>
      <h3>Devices</h3>
      {m.gpus.map(gpu => (
        <Gauge
          key={gpu.index}
          label={`GPU ${gpu.index} · ${gpu.name}`}
          used={gpu.used}
          total={gpu.total}
          note={`this kernel: ${humanBytes(gpu.allocated_by_kernel)}`}
        />
      ))}
      {m.gpus.length === 0 && (
        <p className="mc-Sidebar-empty mc-Sidebar-noGpu">
          {m.gpus_known
            ? 'No GPU: this kernel sees no CUDA device, so models run on the CPU. A GPU needs an NVIDIA card and a CUDA build of torch.'
            : 'GPUs are listed once the kernel imports torch (with its first model).'}
        </p>
      )}
      <Gauge label="Host RAM" used={hostUsed} total={m.host.total} note="" />
      <div className="mc-Sidebar-rss" data-fact="rss">
        Kernel RSS <b>{humanBytes(m.process_rss)}</b>
      </div>
    </section>
  );
}

function Gauge(props: {
  label: string;
  used: number;
  total: number;
  note: string;
}): React.ReactElement {
  const share = props.total > 0 ? Math.min(1, props.used / props.total) : 0;
  return (
    <div className="mc-Gauge" data-gauge={props.label}>
      <div className="mc-Gauge-label">
        <span>{props.label}</span>
        <span>
          {humanBytes(props.used)} / {humanBytes(props.total)}
        </span>
      </div>
      <div className="mc-Gauge-bar">
        <div
          className={share > 0.9 ? 'mc-Gauge-fill mc-mod-high' : 'mc-Gauge-fill'}
          style={{ width: `${(share * 100).toFixed(1)}%` }}
        />
      </div>
      {props.note && <div className="mc-Gauge-note">{props.note}</div>}
    </div>
  );
}

/** Bytes as mc_jupyter's status table writes them (devices.human_bytes). */
export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n.toFixed(0)} B` : `${n.toFixed(1)} ${units[i]}`;
}
