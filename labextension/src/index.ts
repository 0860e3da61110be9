/**
 * mc-jupyter: a right-hand sidebar with the active notebook kernel's loaded models, servers and
 * device memory. Wiring only: the panel (panel.ts) does the rest.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { INotebookTracker } from '@jupyterlab/notebook';

import { SidebarPanel } from './panel';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'mc-jupyter:sidebar',
  description: 'The models, servers and device memory of the active kernel.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    restorer: ILayoutRestorer | null
  ) => {
    const panel = new SidebarPanel(tracker);
    app.shell.add(panel, 'right', { rank: 900 });
    restorer?.add(panel, panel.id);
  }
};

export default plugin;
