/** Files dropped onto `area` go to `onFiles`; anything else dropped (text, links) is left to the browser. */
export function acceptDrops(area: HTMLElement, onFiles: (files: File[]) => void): void {
  const carriesFiles = (event: DragEvent) => event.dataTransfer?.types.includes('Files') === true;
  area.addEventListener('dragover', (event) => {
    if (!carriesFiles(event)) return;
    // Without this the browser would open the file in place of the page.
    event.preventDefault();
    if (event.dataTransfer !== null) event.dataTransfer.dropEffect = 'copy';
    area.dataset.dropping = 'true';
  });
  area.addEventListener('dragleave', (event) => {
    // Leaving for one of its own children is still over the area.
    if (event.relatedTarget instanceof Node && area.contains(event.relatedTarget)) return;
    delete area.dataset.dropping;
  });
  area.addEventListener('drop', (event) => {
    delete area.dataset.dropping;
    const files = [...(event.dataTransfer?.files ?? [])];
    if (files.length === 0) return;
    event.preventDefault();
    onFiles(files);
  });
}
