// The entry point TensorBoard's dynamic plugin loader imports: it calls render() once.

import { App } from "./app";

let app: App | null = null;

export function render(): void {
  if (app) return;
  app = new App();
  app.mount();
}
