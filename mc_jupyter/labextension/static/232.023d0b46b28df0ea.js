"use strict";(self.rspackChunkmc_jupyter=self.rspackChunkmc_jupyter||[]).push([[232],{475(e,r,o){var t=o(601),n=o.n(t),a=o(314),i=(o.n(a))()(n());i.push([e.id,`.mc-Sidebar {
  background: var(--jp-layout-color1);
  color: var(--jp-ui-font-color1);
  font-size: var(--jp-ui-font-size1);
  min-width: 260px;
  overflow-y: auto;
}

.mc-Sidebar-body {
  padding: 8px 12px;
}

.mc-Sidebar-header {
  display: flex;
  align-items: center;
  justify-content: space-between;
}

.mc-Sidebar-header h2 {
  font-size: var(--jp-ui-font-size2);
  margin: 4px 0;
}

.mc-Sidebar h3 {
  font-size: var(--jp-ui-font-size1);
  text-transform: uppercase;
  letter-spacing: 0.04em;
  color: var(--jp-ui-font-color2);
  margin: 14px 0 6px;
}

.mc-Sidebar-notebook {
  color: var(--jp-ui-font-color2);
  overflow: hidden;
  text-overflow: ellipsis;
  white-space: nowrap;
}

.mc-Sidebar-error {
  margin: 8px 0;
  padding: 6px 8px;
  border-left: 3px solid var(--jp-error-color1);
  background: var(--jp-error-color3);
  white-space: pre-wrap;
}

.mc-Sidebar-emptyState,
.mc-Sidebar-empty {
  color: var(--jp-ui-font-color2);
  line-height: 1.5;
}

.mc-Sidebar-remedy {
  font-family: var(--jp-code-font-family);
  background: var(--jp-layout-color2);
  padding: 6px 8px;
  user-select: all;
}

.mc-Component {
  border: 1px solid var(--jp-border-color2);
  border-radius: 4px;
  padding: 6px 8px;
  margin-bottom: 8px;
}

.mc-Component-head {
  display: flex;
  align-items: center;
  gap: 8px;
}

.mc-Component-id {
  font-weight: 600;
  flex: 1;
  min-width: 0;
  overflow-wrap: anywhere;
}

.mc-Component-state {
  font-size: var(--jp-ui-font-size0);
  padding: 1px 6px;
  border-radius: 8px;
  background: var(--jp-layout-color3);
}

.mc-Component-state.mc-mod-ready,
.mc-Component-state.mc-mod-running {
  background: var(--jp-success-color3);
}

.mc-Component-state.mc-mod-loading {
  background: var(--jp-warn-color3);
}

.mc-Component-state.mc-mod-failed,
.mc-Component-state.mc-mod-stopped {
  background: var(--jp-error-color3);
}

.mc-Component-free.jp-Button {
  min-width: 0;
  height: 22px;
  padding: 0 8px;
  font-size: var(--jp-ui-font-size0);
}

.mc-Component-facts {
  display: grid;
  grid-template-columns: max-content 1fr;
  gap: 2px 8px;
  margin: 6px 0 0;
}

.mc-Component-facts dt {
  color: var(--jp-ui-font-color2);
}

/* Shown whole: type, task and model names wrap (at a '/' or '-' first, anywhere if they must). */
.mc-Component-facts dd {
  margin: 0;
  min-width: 0;
  white-space: normal;
  overflow-wrap: anywhere;
}

.mc-Component-activity {
  display: flex;
  flex-wrap: wrap;
  gap: 4px;
  margin-top: 4px;
}

.mc-Component-mark {
  font-size: var(--jp-ui-font-size0);
  padding: 1px 6px;
  border-radius: 8px;
  border: 1px solid var(--jp-brand-color2);
  color: var(--jp-brand-color0);
  background: var(--jp-brand-color3);
}



.mc-Gauge {
  margin-bottom: 8px;
}

.mc-Gauge-label {
  display: flex;
  justify-content: space-between;
  gap: 8px;
}

.mc-Gauge-bar {
  height: 6px;
  background: var(--jp-layout-color3);
  border-radius: 3px;
  overflow: hidden;
  margin-top: 2px;
}

.mc-Gauge-fill {
  height: 100%;
  background: var(--jp-brand-color1);
}

.mc-Gauge-fill.mc-mod-high {
  background: var(--jp-error-color1);
}

.mc-Gauge-note {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
}
`,""]),o.d(r,{},{A:i})},314(e){e.exports=function(e){var r=[];return r.toString=function(){return this.map(function(r){var o="",t=void 0!==r[5];return r[4]&&(o+="@supports (".concat(r[4],") {")),r[2]&&(o+="@media ".concat(r[2]," {")),t&&(o+="@layer".concat(r[5].length>0?" ".concat(r[5]):""," {")),o+=e(r),t&&(o+="}"),r[2]&&(o+="}"),r[4]&&(o+="}"),o}).join("")},r.i=function(e,o,t,n,a){"string"==typeof e&&(e=[[null,e,void 0]]);var i={};if(t)for(var c=0;c<this.length;c++){var p=this[c][0];null!=p&&(i[p]=!0)}for(var s=0;s<e.length;s++){var d=[].concat(e[s]);t&&i[d[0]]||(void 0!==a&&(void 0===d[5]||(d[1]="@layer".concat(d[5].length>0?" ".concat(d[5]):""," {").concat(d[1],"}")),d[5]=a),o&&(d[2]&&(d[1]="@media ".concat(d[2]," {").concat(d[1],"}")),d[2]=o),n&&(d[4]?(d[1]="@supports (".concat(d[4],") {").concat(d[1],"}"),d[4]=n):d[4]="".concat(n)),r.push(d))}},r}},601(e){e.exports=function(e){return e[1]}},72(e){var r=[];function o(e){for(var o=-1,t=0;t<r.length;t++)if(r[t].identifier===e){o=t;break}return o}function t(e,t){for(var n={},a=[],i=0;i<e.length;i++){var c=e[i],p=t.base?c[0]+t.base:c[0],s=n[p]||0,d="".concat(p," ").concat(s);n[p]=s+1;var l=o(d),u={css:c[1],media:c[2],sourceMap:c[3],supports:c[4],layer:c[5]};if(-1!==l)r[l].references++,r[l].updater(u);else{var m=function(e,r){var o=r.domAPI(r);return o.update(e),function(r){r?(r.css!==e.css||r.media!==e.media||r.sourceMap!==e.sourceMap||r.supports!==e.supports||r.layer!==e.layer)&&o.update(e=r):o.remove()}}(u,t);t.byIndex=i,r.splice(i,0,{identifier:d,updater:m,references:1})}a.push(d)}return a}e.exports=function(e,n){var a=t(e=e||[],n=n||{});return function(e){e=e||[];for(var i=0;i<a.length;i++){var c=o(a[i]);r[c].references--}for(var p=t(e,n),s=0;s<a.length;s++){var d=o(a[s]);0===r[d].references&&(r[d].updater(),r.splice(d,1))}a=p}}},659(e){var r={};e.exports=function(e,o){var t=function(e){if(void 0===r[e]){var o=document.querySelector(e);if(window.HTMLIFrameElement&&o instanceof window.HTMLIFrameElement)try{o=o.contentDocument.head}catch(e){o=null}r[e]=o}return r[e]}(e);if(!t)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");t.appendChild(o)}},540(e){e.exports=function(e){var r=document.createElement("style");return e.setAttributes(r,e.attributes),e.insert(r,e.options),r}},56(e,r,o){e.exports=function(e){var r=o.nc;r&&e.setAttribute("nonce",r)}},206(e){e.exports=function(e){if("u"<typeof document)return{update:function(){},remove:function(){}};var r=e.insertStyleElement(e);return{update:function(o){var t,n,a;t="",o.supports&&(t+="@supports (".concat(o.supports,") {")),o.media&&(t+="@media ".concat(o.media," {")),(n=void 0!==o.layer)&&(t+="@layer".concat(o.layer.length>0?" ".concat(o.layer):""," {")),t+=o.css,n&&(t+="}"),o.media&&(t+="}"),o.supports&&(t+="}"),(a=o.sourceMap)&&"u">typeof btoa&&(t+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(a))))," */")),e.styleTagTransform(t,r,e.options)},remove:function(){var e;null===(e=r).parentNode||e.parentNode.removeChild(e)}}}},113(e){e.exports=function(e,r){if(r.styleSheet)r.styleSheet.cssText=e;else{for(;r.firstChild;)r.removeChild(r.firstChild);r.appendChild(document.createTextNode(e))}}},579(e,r,o){var t=o(72),n=o.n(t),a=o(206),i=o.n(a),c=o(659),p=o.n(c),s=o(56),d=o.n(s),l=o(540),u=o.n(l),m=o(113),f=o.n(m),v=o(475),g={};g.styleTagTransform=f(),g.setAttributes=d(),g.insert=p().bind(null,"head"),g.domAPI=i(),g.insertStyleElement=u(),n()(v.A,g),v.A&&v.A.locals&&v.A.locals}}]);