// Shows the page's origin and points the data-host links at the same page and port on
// another demo host.
document.querySelector(".origin").textContent = location.origin;
for (const link of document.querySelectorAll("a[data-host]")) {
  const url = new URL(link.getAttribute("href"), location.href);
  url.hostname = link.dataset.host;
  link.href = url.href;
}
