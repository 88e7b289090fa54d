// The test app's service worker: the kit with app hooks that fail, as an app's bugs would.
// Whatever they do, every push must still show a notification.
import { installTidings } from '/tidings/tidings-sw.js';

installTidings({
  version: 'kit-chromium-test',
  title: 'Kit test',
  // A data message: the app's handler throws.
  onData: (data) => {
    if (data.kind === 'boom') throw new Error('the app failed on a data message');
  },
  // A text message: the app's handler throws; a mutable one: it returns options the browser
  // refuses (a function cannot be stored with a notification).
  onPush: (shown) => {
    if (shown.options.body === 'throw in onPush') throw new Error('the app failed in onPush');
    if (shown.declarative) return { options: { ...shown.options, data: () => 'not cloneable' } };
    return undefined;
  },
});
