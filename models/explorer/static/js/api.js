// Talking to the server: JSON in, JSON out; an error answer becomes an Error with the server's message.

export async function getJSON(path) {
  return answer(await fetch(path));
}

export async function postJSON(path, body) {
  return answer(await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  }));
}

async function answer(response) {
  let data;
  try {
    data = await response.json();
  } catch {
    throw new Error(`the server answered ${response.status} without JSON`);
  }
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}
