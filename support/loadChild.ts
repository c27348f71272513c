/**
 * The child side of {@link startLoadInChild}: runs {@link startLoad} with what the parent sends, and
 * sends the report back when told to stop.
 */
import { startLoad, type LoadOptions } from "./load";

process.once("message", (start: { url: string; options: LoadOptions }) => {
  const load = startLoad(start.url, start.options);
  process.once("message", () => {
    void load.stop().then((report) => process.send!(report, () => process.exit(0)));
  });
  process.send!("started");
});
